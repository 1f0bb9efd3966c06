"""How long the end of a run keeps the training thread, with Sacred's last heartbeat on time and late.

    python benchmarks/final_beat.py [--trials 5]

Sacred joins its heartbeat thread for 2 s, then emits the run's end; the observer waits for a last beat still on
its way at most ``flush_timeout`` seconds (then records the run's end when the beat arrives, on a thread of its
own). Printed per case: the time spent in ``completed_event`` (median and longest over trials) and whether every
point reached MongoDB (mongomock, in this process). Cases: the last beat on time; 3 s late (1 s past Sacred's
join, under ``flush_timeout``); 12 s late with ``flush_timeout=2`` (the bound). Target (issues 16, 21): on time,
<= 5 ms; late, never more than ``flush_timeout``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import mongomock
import sacred.run
from sacred import Experiment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sacred_gpu import GpuMongoObserver, connection  # noqa: E402
from sacred_gpu.testing.fake_nvml import FakeNvml  # noqa: E402

POINTS = 1000


def trial(delay: float, flush_timeout: float) -> tuple[float, bool]:
    """One run whose last beat starts ``delay`` s after Sacred stops the heartbeat: (s in completed_event, all
    points stored once the run's end is recorded)."""
    real = sacred.run.Run._emit_heartbeat
    delayed: list[bool] = []

    def emit(run: sacred.run.Run) -> None:
        # once: Sacred's timer can emit two beats after its stop event (one due just as it is set, then the last)
        if delay and run._stop_heartbeat_event.is_set() and not delayed:
            delayed.append(True)
            time.sleep(delay)
        real(run)

    client = connection.open_client(client=mongomock.MongoClient())
    observer = GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False, flush_timeout=flush_timeout)
    spent: list[float] = []
    completed = observer.completed_event

    def timed(**kwargs: object) -> None:
        started = time.perf_counter()
        completed(**kwargs)
        spent.append(time.perf_counter() - started)

    observer.completed_event = timed  # type: ignore[method-assign]
    ex = Experiment("final_beat", save_git_info=False)

    @ex.main
    def main(_run: sacred.run.Run) -> None:
        time.sleep(0.3)
        for step in range(POINTS):
            _run.log_scalar("loss", 0.5, step)

    ex.observers.append(observer)
    sacred.run.Run._emit_heartbeat = emit  # type: ignore[method-assign]
    try:
        run = ex.run(options={"--beat-interval": 0.1, "--capture": "no", "--loglevel": "ERROR"})
    finally:
        sacred.run.Run._emit_heartbeat = real  # type: ignore[method-assign]
    if observer._finisher is not None:
        observer._finisher.join()
    stored = sum(len(doc["steps"]) for doc in client["sacred"].metrics.find({"run_id": run._id, "name": "loss"}))
    return spent[0], stored == POINTS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    cases = [("last beat on time", 0.0, 10.0), ("last beat 3 s late", 3.0, 10.0),
             ("last beat 12 s late, flush_timeout=2", 12.0, 2.0)]
    print(f"{'case':<40} {'completed_event median':>23} {'longest':>9}  every point stored")
    for name, delay, flush_timeout in cases:
        results = [trial(delay, flush_timeout) for _ in range(args.trials if delay < 10 else 2)]
        times = [spent for spent, _ in results]
        print(f"{name:<40} {statistics.median(times) * 1000:>20.1f} ms {max(times) * 1000:>6.0f} ms  "
              f"{all(ok for _, ok in results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
