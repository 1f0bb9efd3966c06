"""How soon a heartbeat of a run recorded on a machine without MongoDB is on the board, through a synced folder.

    python benchmarks/follow_latency.py [--beats 12] [--copy-every 1.0] [--interval 2.0]

A real Sacred run records OFFLINE (``SACRED_GPU_OFFLINE``'s mode) into a spool with 1 s heartbeats, logging a metric
and sampling two simulated GPUs; a thread plays the sync tool, copying what is new of the spool's files into another
folder every ``--copy-every`` seconds, in pieces cut anywhere (as Drive or rsync deliver it); ``sacred-gpu sync
--follow`` (``Follower``) looks at that folder every ``--interval`` seconds and uploads to MongoDB (mongomock). For
each heartbeat, the delay from the beat (the time Sacred stamped on it) until the board's read API
(``RunStore.live_runs``, what ``/metrics`` serves) shows it. Expected: at most ``copy-every + interval`` plus the
upload, a few seconds. Printed: each delay, their median and longest, and whether every logged point arrived once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import mongomock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sacred import Experiment  # noqa: E402

from sacred_gpu import GpuMongoObserver  # noqa: E402
from sacred_gpu.read import connect  # noqa: E402
from sacred_gpu.record.follow import Follower  # noqa: E402
from sacred_gpu.testing.fake_nvml import FakeNvml, two_gpus  # noqa: E402

logger = logging.getLogger("follow_latency")


def copy_new_bytes(source: Path, target: Path) -> None:
    """One pass of the sync tool: append what each file of ``source`` has beyond its copy (a file's new part may end
    inside a record: the next pass completes it)."""
    for path in source.rglob("*"):
        if path.is_dir() or path.name == "lock":
            continue
        copy = target / path.relative_to(source)
        copy.parent.mkdir(parents=True, exist_ok=True)
        have = copy.stat().st_size if copy.exists() else 0
        with path.open("rb") as src:
            src.seek(have)
            data = src.read()
        if data:
            if path.name == "state.json" or path.parent.name == "files":
                copy.write_bytes(path.read_bytes())  # small files: replaced whole
            else:
                with copy.open("ab") as dst:
                    dst.write(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beats", type=int, default=12, help="heartbeats of the run (1 s each)")
    parser.add_argument("--copy-every", type=float, default=1.0, help="seconds between two passes of the sync tool")
    parser.add_argument("--interval", type=float, default=2.0, help="the follower's --interval")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as folder:
        spool, synced, books = Path(folder, "spool"), Path(folder, "drive"), Path(folder, "books")
        os.environ["SACRED_GPU_SPOOL"] = str(spool)
        client = mongomock.MongoClient()
        store = connect(client=client, db_name="sacred")
        delays: list[float] = []
        seen: set[dt.datetime] = set()
        stop = threading.Event()

        def sync_tool() -> None:
            while not stop.wait(args.copy_every):
                if spool.exists():
                    copy_new_bytes(spool, synced)

        def watch() -> None:
            while not stop.wait(0.05):
                for run in store.live_runs():
                    beat = client["sacred"].runs.find_one({"_id": run.run_id}, {"heartbeat": 1}).get("heartbeat")
                    if beat is not None and beat not in seen:
                        seen.add(beat)
                        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
                        delays.append((now - beat).total_seconds())

        follower = Follower(synced, books, client=client)
        threads = [threading.Thread(target=sync_tool), threading.Thread(target=watch),
                   threading.Thread(target=follower.run, kwargs={"interval": args.interval, "stop": stop})]
        for thread in threads:
            thread.start()

        ex = Experiment("follow_latency", save_git_info=False)

        @ex.main
        def train(_run):  # noqa: ANN001, ANN202
            for step in range(args.beats * 10):
                _run.log_scalar("loss", 1.0 / (step + 1), step)
                time.sleep(0.1)

        ex.observers.append(GpuMongoObserver(client=client, offline=True, nvml=FakeNvml(two_gpus())))
        ex.run(options={"--beat-interval": 1.0})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and client["sacred"].runs.count_documents({"status": "COMPLETED"}) == 0:
            time.sleep(0.1)
        stop.set()
        for thread in threads:
            thread.join(30)
        steps = [s for doc in client["sacred"].metrics.find({"name": "loss"}) for s in doc["steps"]]
        print(f"sync tool every {args.copy_every:g} s, follower every {args.interval:g} s, {len(delays)} heartbeats "
              f"seen on the board while the run went on")
        print("delay from each heartbeat to the board (s): " + ", ".join(f"{d:.2f}" for d in delays))
        if delays:
            print(f"median {statistics.median(delays):.2f} s, longest {max(delays):.2f} s "
                  f"(expected at most {args.copy_every + args.interval:g} s plus the upload)")
        print(f"every point once: {sorted(steps) == list(range(args.beats * 10))} ({len(steps)} stored)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
