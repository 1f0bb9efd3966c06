"""What ordinary Sacred scripts do to the observer (issue 22): change directory, checkpoint every epoch, drop big
objects, run in notebooks (an observer appended twice, many runs in one process)."""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
import weakref
from pathlib import Path

import gridfs
import pytest
from bson import ObjectId
from sacred import Experiment
from sacred.observers.base import RunObserver

from sacred_gpu import GpuMongoObserver, cli, connection
from sacred_gpu.record.sync import journals
from sacred_gpu.testing.fake_nvml import FakeNvml
from tests.support.experiments import FAST, run_experiment
from tests.support.wire_server import WireServer


def observer(client, **kwargs) -> GpuMongoObserver:
    return GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False, **kwargs)


def wait_for(condition, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds:g} s"
        time.sleep(0.02)


@pytest.mark.parametrize("how", ["spool_dir", "environment"])
def test_a_run_that_changes_directory_keeps_its_journal(client, db, tmp_path, monkeypatch, how):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    if how == "environment":
        monkeypatch.setenv("SACRED_GPU_SPOOL", "journal")
    watcher = observer(client, **({"spool_dir": "journal"} if how == "spool_dir" else {}))

    def main(_run):
        os.chdir(tmp_path / "out")
        for step in range(5):
            _run.log_scalar("loss", float(step), step)
        Path("model.bin").write_bytes(b"m" * 100)
        _run.add_artifact("model.bin")

    run = run_experiment(main, watcher)
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED" and [a["name"] for a in doc["artifacts"]] == ["model.bin"]
    assert db.metrics.find_one({"run_id": run._id, "name": "loss"})["steps"] == list(range(5))
    assert watcher.spool_dir == tmp_path / "journal" and journals(tmp_path / "journal") == []


def test_checkpoints_every_epoch_leave_the_spool_as_soon_as_mongodb_has_them(client, db, tmp_path):
    """The spool holds what is in flight, not every checkpoint of the run."""
    checkpoint = tmp_path / "checkpoint.pt"
    held = []

    def main(_run):
        [journal] = journals(watcher.spool_dir)
        for epoch in range(6):
            checkpoint.write_bytes(os.urandom(2 * 1024 * 1024))
            _run.add_artifact(str(checkpoint), name=f"checkpoint-{epoch}.pt")
            wait_for(lambda: db["fs.files"].count_documents({"filename": {"$regex": "checkpoint-"}}) == epoch + 1,
                     f"checkpoint {epoch} in GridFS")
            wait_for(lambda: not any(journal.files.iterdir()), f"checkpoint {epoch}'s copy removed from the spool")
            held.append(sum(p.stat().st_size for p in journal.folder.rglob("*") if p.is_file()))

    watcher = observer(client)
    run = run_experiment(main, watcher)
    assert len(db.runs.find_one({"_id": run._id})["artifacts"]) == 6
    assert max(held) < 1024 * 1024  # the journal's records, no copy of a checkpoint


def test_the_users_heap_is_theirs_cyclic_garbage_dropped_in_main_is_freed(client):
    class Node:
        def __init__(self) -> None:
            self.peer = self

    model = [Node() for _ in range(10_000)]
    probe = weakref.ref(model[0])
    freed = {}

    def main():
        nonlocal model
        model = None
        gc.collect()
        freed["model"] = probe() is None

    run_experiment(main, observer(client))
    assert freed["model"] and gc.get_freeze_count() == 0


def test_an_observer_attached_twice_fails_the_run_once_and_leaves_nothing_behind(client, db, spool):
    watcher = observer(client)
    ex = Experiment("twice", save_git_info=False)
    ex.main(lambda: 1)
    ex.observers.extend([watcher, watcher])  # a notebook cell that appends it, run twice
    with pytest.raises(Exception, match="attached to the run twice"):
        ex.run(options=FAST)
    [doc] = list(db.runs.find({}))
    assert doc["status"] == "FAILED" and "attached to the run twice" in "".join(doc["fail_trace"])
    assert journals(spool) == []
    wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith("sacred-gpu")],
             "the observer's threads ending")
    ex.observers.pop()  # fixed: the next run of the same observer is recorded as usual
    assert ex.run(options=FAST).status == "COMPLETED" and db.runs.count_documents({"status": "COMPLETED"}) == 1


def test_warnings_are_per_run(client, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="sacred_gpu")
    watcher = observer(client)

    def main(_run):
        _run.add_artifact(str(tmp_path / "missing.bin"))

    for _ in range(3):
        run_experiment(main, watcher)
    assert sum("artifact_event failed" in r.getMessage() for r in caplog.records) == 3


def test_another_observers_failed_start_leaves_no_warning_of_ours(client, caplog):
    caplog.set_level(logging.WARNING, logger="sacred_gpu")

    class Broken(RunObserver):
        priority = 100  # called before ours

        def started_event(self, *args, **kwargs):
            raise RuntimeError("broken observer")

    with pytest.raises(RuntimeError, match="broken observer"):
        run_experiment(lambda: 1, Broken(), observer(client))
    assert [r.getMessage() for r in caplog.records if r.name.startswith("sacred_gpu")] == []


def test_the_end_of_a_run_is_never_held_behind_a_checkpoint_upload(tmp_path, spool):
    """The final status reaches MongoDB while the checkpoint added on main's last line is still uploading; the
    process then waits for the upload while it makes progress."""
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(os.urandom(8 * 1024 * 1024))
    seen = {}
    with WireServer() as server:
        connection.enable_gridfs(server.client)
        db = server.client["sacred"]

        def release_once_completed():
            wait_for(lambda: (db.runs.find_one({}, {"status": 1}) or {}).get("status") == "COMPLETED",
                     "the final status written while the upload is held", seconds=20)
            seen["artifact stored at COMPLETED"] = db["fs.files"].count_documents({"filename": {"$regex": "ckpt"}})
            server.restore()

        def main(_run):
            server.hang_after_hello(only={"insert"}, collection="fs.chunks")  # the upload cannot finish
            threading.Thread(target=release_once_completed, daemon=True).start()
            _run.add_artifact(str(checkpoint), name="ckpt.pt")

        run = run_experiment(main, GpuMongoObserver(url=server.url, nvml=FakeNvml([]), sampling=False,
                                                    flush_timeout=10.0))
        assert seen == {"artifact stored at COMPLETED": 0}
        stored = gridfs.GridFS(db).find_one({"filename": {"$regex": "ckpt"}})
        assert stored is not None and stored.read() == checkpoint.read_bytes()
        assert db.runs.find_one({"_id": run._id})["artifacts"][0]["file_id"] == stored._id
        assert journals(spool) == []


def test_an_upload_that_stalls_is_left_to_sync_with_a_true_message(tmp_path, spool, caplog):
    caplog.set_level(logging.WARNING, logger="sacred_gpu")
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(os.urandom(1024 * 1024))
    with WireServer() as server:
        connection.enable_gridfs(server.client)

        def main(_run):
            server.hang_after_hello(only={"insert"}, collection="fs.chunks")
            _run.add_artifact(str(checkpoint), name="ckpt.pt")

        started = time.monotonic()
        run = run_experiment(main, GpuMongoObserver(url=server.url, nvml=FakeNvml([]), sampling=False,
                                                    flush_timeout=1.0))
        assert time.monotonic() - started < 15
        assert server.client["sacred"].runs.find_one({"_id": run._id})["status"] == "COMPLETED"
        assert any("made no progress" in r.getMessage() for r in caplog.records)
        [journal] = journals(spool)
        server.restore()
        wait_for(lambda: journal.try_lock(), "the stalled upload's attempt ending", seconds=30)
        journal.unlock()
        assert cli.main(["sync", str(spool), "--mu", server.url]) == 0
        stored = gridfs.GridFS(server.client["sacred"]).find_one({"filename": {"$regex": "ckpt"}})
        assert stored is not None and stored.read() == checkpoint.read_bytes()


def test_two_runs_uploading_the_same_resource_at_once_store_it_once(tmp_path):
    """GridFS lists a file only once all its chunks are in: a second run's dedup must know the upload in flight."""
    import pymongo

    from sacred_gpu.record.writer import MongoWriter, record

    data = tmp_path / "data.csv"
    data.write_bytes(os.urandom(600 * 1024))  # a few GridFS chunks
    with WireServer() as server:
        server.slow(0.05)  # every chunk takes a while
        recs = [record("file", kind="resource", file_id=ObjectId(), path=str(data), md5="m" * 32,
                       original=str(data)) for _ in range(2)]
        writers = [MongoWriter(pymongo.MongoClient(server.url, serverSelectionTimeoutMS=2000)["sacred"])
                   for _ in range(2)]
        remaps: list[dict] = [{}, {}]
        threads = [threading.Thread(target=writer.apply, args=(1, rec, tmp_path, remap, False))
                   for writer, rec, remap in zip(writers, recs, remaps)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        server.restore()
        with server.lock:
            stored = list(server.client["sacred"]["fs.files"].find({"filename": str(data)}))
        assert len(stored) == 1
        assert sum(len(remap) for remap in remaps) == 1  # the second run points at the first one's copy


def test_a_user_metric_named_like_the_observers_own_series_is_kept_as_logged(client, db, monkeypatch):
    """The observer's ``sys/...`` series live apart: a user's ``sys/cpu/util_pct`` keeps its 30 points, is capped like
    any user metric, and the sampler's points of that name stay in the observer's own series."""
    from sacred_gpu import schema
    from sacred_gpu.read import store

    monkeypatch.setattr(schema, "METRIC_CAP", 20)
    watcher = GpuMongoObserver(client=client, nvml=FakeNvml([]), sample_interval=0.02, slow_sample_interval=0.1)

    def main(_run):
        for step in range(30):
            _run.log_scalar("sys/cpu/util_pct", 1000.0 + step, step)
            time.sleep(0.01)

    run = run_experiment(main, watcher)
    doc = db.runs.find_one({"_id": run._id})
    named = [entry for entry in doc["info"]["metrics"] if entry["name"] == "sys/cpu/util_pct"]
    assert sorted(str(entry.get("origin")) for entry in named) == ["None", schema.SYSTEM_ORIGIN]
    user_names, system_names = schema.series_names(doc)
    assert user_names == ["sys/cpu/util_pct"] and "sys/cpu/util_pct" in system_names

    user = db.metrics.find_one({"run_id": run._id, "name": "sys/cpu/util_pct", "origin": {"$exists": False}})
    assert user["full_points"] == 20 and user["steps"][:20] == list(range(20))  # capped like any user metric
    assert doc["metric_rollups"]["sys/cpu/util_pct"]["count"] == 30

    runs = store.connect(client=client)
    logged = runs.metrics(run._id, "sys/cpu/util_pct")
    assert logged["step"].tolist() == list(range(30)) and logged["value"].tolist() == [1000.0 + s for s in range(30)]
    sampled = runs.metrics(run._id, "sys/cpu/util_pct", system=True)
    assert len(sampled) >= 1 and (sampled["value"] <= 100).all()  # the sampler's percentages, none of the user's
    assert "sys/cpu/util_pct" in runs.system(run._id).columns


CAPTURE_FD_SCRIPT = """
import json, logging, sys, time
import mongomock
from sacred import Experiment
from sacred_gpu import GpuMongoObserver
from sacred_gpu.testing.fake_nvml import FakeNvml

client = mongomock.MongoClient()
ex = Experiment("capture_fd", save_git_info=False)
ex.observers.append(GpuMongoObserver(client=client, nvml=FakeNvml(init_error=12), sample_interval=0.05))

@ex.main
def main(_run):
    print("hello from main")
    logging.getLogger("sacred_gpu.record.observer").warning("sacred-gpu: a warning of ours\\nover two lines")
    try:
        raise ValueError("our own failure")
    except ValueError:
        logging.getLogger("sacred_gpu").warning("sacred-gpu: with a traceback", exc_info=True)
    print("the user's line after ours", flush=True)
    # Sacred's two `tee` processes copy the output to its file as they get to it: wait until all of it is there
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(_run._output_file.buffer.name) as copied:
            captured["all"] = copied.read()
        if all(part in captured["all"] for part in ("our own failure", "the user's line after ours")):
            break
        time.sleep(0.01)

captured = {}
ex.run(options={"--capture": "fd"})
sys.__stdout__.write(json.dumps([client["sacred"].runs.find_one()["captured_out"], captured["all"]]))
"""


def test_our_log_lines_stay_out_of_the_captured_output_under_capture_fd(tmp_path):
    """Under ``--capture fd`` everything on stdout/stderr is the run's output; ours (printed by the user's logging
    handler, Sacred's here) is left out of what is stored, the script's own lines and Sacred's are kept."""
    import json
    import subprocess
    import sys

    script = tmp_path / "capture_fd.py"
    script.write_text(CAPTURE_FD_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "SACRED_GPU_SPOOL": str(tmp_path / "spool")})
    assert done.returncode == 0, done.stderr
    stored, printed = json.loads(done.stdout.strip().splitlines()[-1])
    # printed as the user's logging asked (Sacred's capture saw them), then left out of what is stored
    assert "No NVIDIA GPU found" in printed and "a warning of ours" in printed and "our own failure" in printed
    assert "hello from main\n" in stored and "the user's line after ours" in stored and "Started run" in stored
    for ours in ("No NVIDIA GPU found", "a warning of ours", "over two lines", "with a traceback", "our own failure",
                 "Traceback"):
        assert ours not in stored, stored
