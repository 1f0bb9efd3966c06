"""Step throughput of a CPU-bound training loop with the observer sampling at 1 Hz, versus no observer.

    python benchmarks/training_overhead.py [--pairs 20] [--seconds 2] [--blas-threads 1]

Both arms are real Sacred runs of the same loop (a numpy MLP on scikit-learn's digits, one minibatch step at a time,
logging 3 metrics per step); they alternate in one process (A B, then B A, ...) so machine noise and drift hit both
alike, and the median of the per-pair ratios is reported with its interquartile range. Arm B
adds GpuMongoObserver (mongomock database; sampling every 1 s, slow fields every 10 s; heartbeat every 2 s, five
times Sacred's default rate, so metric and sample writes are included). Prints steps/s per trial and the median of
the per-pair ratios B/A (target: at least 0.99).

The loop's matrix products run on one BLAS thread by default (``--blas-threads``): a loop that spins every core in
a BLAS barrier turns any other thread's wake-up, its own heartbeat included, into a stall, which measures OpenBLAS's
barrier rather than the observer. The database is mongomock, in this process: its CPU time, which a MongoDB server
would spend in its own process, is counted against arm B here.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time

if __name__ == "__main__":  # must precede numpy's import
    threads = sys.argv[sys.argv.index("--blas-threads") + 1] if "--blas-threads" in sys.argv else "1"
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = threads

import mongomock
import numpy as np
from sacred import Experiment
from sklearn.datasets import load_digits

from sacred_gpu import GpuMongoObserver


def make_experiment(seconds: float) -> Experiment:
    ex = Experiment("overhead", save_git_info=False)
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[digits.target]

    @ex.main
    def train(_run, _seed):
        rng = np.random.default_rng(0)
        w1 = rng.normal(0, 0.1, (64, 1024)).astype(np.float32)
        w2 = rng.normal(0, 0.1, (1024, 10)).astype(np.float32)
        steps, deadline = 0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            batch = rng.integers(0, len(x), 256)
            hidden = np.maximum(x[batch] @ w1, 0)
            logits = hidden @ w2
            probs = np.exp(logits - logits.max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
            grad = (probs - y[batch]) / len(batch)
            w2 -= 0.1 * hidden.T @ grad
            w1 -= 0.1 * x[batch].T @ ((grad @ w2.T) * (hidden > 0))
            loss = float(-np.log(probs[np.arange(len(batch)), y[batch].argmax(1)] + 1e-9).mean())
            _run.log_scalar("loss", loss, steps)
            _run.log_scalar("acc", float((probs.argmax(1) == y[batch].argmax(1)).mean()), steps)
            _run.log_scalar("lr", 0.1, steps)
            steps += 1
        return steps / seconds

    return ex


def trial(observed: bool, seconds: float) -> float:
    ex = make_experiment(seconds)
    if observed:
        ex.observers.append(GpuMongoObserver(client=mongomock.MongoClient(), sample_interval=1.0))
    run = ex.run(options={"--beat-interval": 2.0, "--capture": "no" if not observed else "sys", "--loglevel": "ERROR"})
    return run.result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each trial, s")
    parser.add_argument("--blas-threads", default="1", help="BLAS threads of the training loop (default 1)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    trial(False, 1.0), trial(True, 1.0)  # warm up imports, caches and BLAS threads
    ratios = []
    print(f"BLAS threads: {os.environ.get('OPENBLAS_NUM_THREADS')}; {args.pairs} pairs of {args.seconds:g} s trials")
    print(f"{'pair':>4} {'no observer steps/s':>20} {'observer steps/s':>17} {'ratio':>7}")
    for pair in range(args.pairs):
        if pair % 2 == 0:
            baseline, observed = trial(False, args.seconds), trial(True, args.seconds)
        else:
            observed, baseline = trial(True, args.seconds), trial(False, args.seconds)
        ratios.append(observed / baseline)
        print(f"{pair:>4} {baseline:>20.1f} {observed:>17.1f} {ratios[-1]:>7.3f}")
    median = statistics.median(ratios)
    quartiles = statistics.quantiles(ratios, n=4)
    print(f"median throughput ratio (observer / none): {median:.3f} (IQR {quartiles[0]:.3f}-{quartiles[2]:.3f})  "
          f"target >= 0.99 -> {'MET' if median >= 0.99 else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
