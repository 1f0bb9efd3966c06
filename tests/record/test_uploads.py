"""A live run's files uploaded beside its records (``record/uploads.py``): checkpoints leave the spool as soon as
MongoDB has them, the run's end never waits behind an upload, a resource stored once."""

from __future__ import annotations

import logging
import os
import threading
import time

import gridfs
from bson import ObjectId

from sacred_gpu import GpuMongoObserver, cli, connection
from sacred_gpu.record.sync import journals
from sacred_gpu.testing.fake_nvml import FakeNvml
from tests.support.experiments import run_experiment
from tests.support.recording import observer, wait_for
from tests.support.wire_server import WireServer


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
