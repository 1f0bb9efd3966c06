"""What ordinary scripts cost: the spool's size over a run that checkpoints every epoch, and the time the start of a
run takes beside a large heap.

    python benchmarks/ordinary_usage.py [--rounds 5] [--checkpoint-mb 20] [--epochs 6] [--big-mb 400]

1. Spool size. A run adds a ``--checkpoint-mb`` checkpoint every epoch (MongoDB: mongomock, in this process);
   printed after each ``add_artifact`` and again once MongoDB holds the checkpoint: the bytes in the run's journal
   folder. Target (issue 22): the spool holds what is in flight, not every checkpoint of the run.
2. A ``--big-mb`` (400) checkpoint added on main's last line, MongoDB a wire-protocol server on loopback
   (``tests/support/wire_server.py``, storing into mongomock): seconds from main's end until the run's final
   status is in MongoDB, until ``ex.run()`` returns, and until the checkpoint is stored. Target (issue 22): the
   status is not held behind the upload.
3. Start beside 2,000,000 live objects. The time from ``ex.run()`` to the first line of an empty main, with no
   observer, with ours as it comes (``freeze_gc=False``) and with ``freeze_gc=True`` (a full collection, then a
   freeze, at every start), arms alternating over ``--rounds`` rounds; printed: the median per arm and the median
   of the per-round difference to no observer.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import mongomock
from sacred import Experiment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sacred_gpu import GpuMongoObserver, connection  # noqa: E402
from sacred_gpu.record.sync import journals  # noqa: E402
from sacred_gpu.testing.fake_nvml import FakeNvml  # noqa: E402


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def spool_over_epochs(checkpoint_mb: int, epochs: int) -> None:
    client = connection.open_client(client=mongomock.MongoClient())
    spool = Path(tempfile.mkdtemp())
    observer = GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False, spool_dir=spool)
    ex = Experiment("checkpoints", save_git_info=False)
    files = client["sacred"]["fs.files"]

    @ex.main
    def main(_run: object) -> None:
        [journal] = journals(spool)
        checkpoint = spool.parent / f"checkpoint-{os.getpid()}.pt"
        for epoch in range(epochs):
            checkpoint.write_bytes(os.urandom(checkpoint_mb * 1024 * 1024))
            _run.add_artifact(str(checkpoint), name=f"checkpoint-{epoch}.pt")  # type: ignore[attr-defined]
            added = folder_bytes(journal.folder)
            started = time.monotonic()
            while files.count_documents({"filename": {"$regex": "checkpoint-"}}) <= epoch:
                time.sleep(0.01)
            stored_after = time.monotonic() - started
            time.sleep(0.2)  # the next look of the writer thread acknowledges it
            print(f"  epoch {epoch}: spool {added / 2**20:6.1f} MB just after add_artifact, "
                  f"{folder_bytes(journal.folder) / 2**20:6.1f} MB once MongoDB holds it ({stored_after:.2f} s)")
        checkpoint.unlink()

    ex.observers.append(observer)
    ex.run(options={"--capture": "no", "--loglevel": "ERROR"})


def big_checkpoint(megabytes: int) -> None:
    from tests.support.wire_server import WireServer

    path = Path(tempfile.mkdtemp()) / "big.pt"
    with open(path, "wb") as handle:
        for _ in range(megabytes):
            handle.write(os.urandom(1024 * 1024))
    marks: dict[str, float] = {}
    with WireServer() as server:
        db = server.client["sacred"]

        def watch() -> None:
            while "stored" not in marks:
                with server.lock:
                    doc = db.runs.find_one({}, {"status": 1})
                    stored = db["fs.files"].count_documents({"filename": {"$regex": "big.pt$"}})
                now = time.monotonic()
                if doc and doc.get("status") == "COMPLETED":
                    marks.setdefault("status", now)
                if stored:
                    marks["stored"] = now
                time.sleep(0.05)

        ex = Experiment("big_checkpoint", save_git_info=False)

        @ex.main
        def main(_run: object) -> None:
            _run.add_artifact(str(path))  # type: ignore[attr-defined]
            marks["main ended"] = time.monotonic()

        ex.observers.append(GpuMongoObserver(url=server.url, nvml=FakeNvml([]), sampling=False,
                                             spool_dir=Path(tempfile.mkdtemp())))
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        ex.run(options={"--capture": "no", "--loglevel": "ERROR"})
        marks["ex.run returned"] = time.monotonic()
        watcher.join(600)
    path.unlink()
    end = marks["main ended"]
    for name in ("status", "ex.run returned", "stored"):
        print(f"  {name:<28} {marks[name] - end:7.2f} s after main's end")


def start_times(rounds: int) -> None:
    heap = [[i] for i in range(2_000_000)]  # 2,000,000 live container objects, as a big model's bookkeeping
    arms = {"no observer": None, "ours (freeze_gc=False)": False, "ours, freeze_gc=True": True}
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    client = connection.open_client(client=mongomock.MongoClient())
    for round_ in range(rounds):
        labels = list(arms)
        for label in labels[round_ % 3:] + labels[:round_ % 3]:
            ex = Experiment("start", save_git_info=False)
            entered: list[float] = []
            ex.main(lambda: entered.append(time.perf_counter()))
            if arms[label] is not None:
                ex.observers.append(GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False,
                                                     freeze_gc=bool(arms[label])))
            started = time.perf_counter()
            ex.run(options={"--capture": "no", "--loglevel": "ERROR"})
            times[label].append(entered[0] - started)
    base = times["no observer"]
    for label, values in times.items():
        extra = statistics.median(v - b for v, b in zip(values, base))
        print(f"  {label:<24} median {statistics.median(values) * 1e3:7.1f} ms   added vs no observer "
              f"{extra * 1e3:7.1f} ms")
    del heap


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--checkpoint-mb", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--big-mb", type=int, default=400)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(f"1. spool size, a {args.checkpoint_mb} MB checkpoint every epoch")
    spool_over_epochs(args.checkpoint_mb, args.epochs)
    print(f"2. a {args.big_mb} MB checkpoint on main's last line, MongoDB over TCP: when the status, ex.run() and "
          "the checkpoint are done")
    big_checkpoint(args.big_mb)
    print("3. time from ex.run() to main beside 2,000,000 live objects")
    start_times(args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
