"""Issue 13's faults, with real Sacred runs: damaged journals, full disks, refused and unencodable records, values
past 16 MB, names MongoDB cannot store as keys, and a spool that cannot be written."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import bson
import pytest

from sacred_gpu import GpuMongoObserver, cli
from sacred_gpu.read.store import RunStore
from sacred_gpu.record import quarantine
from sacred_gpu.record.journal import Journal
from sacred_gpu.record.recorder import Recorder
from sacred_gpu.record.spool import private_fallback
from sacred_gpu.record.sync import journals, sync_spool
from sacred_gpu.testing.fake_nvml import FakeNvml
from tests.support.experiments import run_experiment
from tests.support.fault_matrix import FullDisk

STEPS = 300


def observer(client, **kwargs) -> GpuMongoObserver:
    return GpuMongoObserver(client=client, nvml=FakeNvml([]), **{"sampling": False, **kwargs})


def logging_steps(steps: int = STEPS, pause: float = 0.0005, hook=None):
    """A run that logs ``loss`` at every step, a heartbeat's worth of points per record."""

    def main(_run):
        for step in range(steps):
            _run.log_scalar("loss", float(step), step)
            if hook:
                hook(step)
            time.sleep(pause)
        return "done"

    return main


def stored_steps(db, run_id, name: str = "loss") -> list[int]:
    return [step for doc in db.metrics.find({"run_id": run_id, "name": name}) for step in doc["steps"]]


def journal_steps(path: Path) -> dict[int, tuple[list[int], int]]:
    """The steps of each metric record of a segment file and the offset where the record ends, by its offset."""
    data, at, found = path.read_bytes(), 0, {}
    while at < len(data):
        length = int.from_bytes(data[at + 4:at + 8], "little")
        rec = bson.decode(data[at + 12:at + 12 + length])
        if rec["op"] == "metric":
            found[at] = (list(rec["steps"]), at + 12 + length)
        at += 12 + length
    return found


def sync_cli(spool: Path, capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["sync", str(spool), *args])
    return code, capsys.readouterr().out


@pytest.fixture
def mock_sync(client, monkeypatch):
    """``sacred-gpu sync`` on the command line, uploading to the in-memory database."""
    import sacred_gpu.record.sync as sync_module

    real = sync_module.sync_spool
    monkeypatch.setattr(sync_module, "sync_spool", lambda spool, **kw: real(spool, **{**kw, "client": client,
                                                                                      "url": None}))


# -- 1. damaged journals ------------------------------------------------------------------------------------------
def test_a_flipped_byte_sets_one_record_aside_and_every_other_point_and_the_end_reach_mongodb(
        client, db, spool, capsys, mock_sync):
    run = run_experiment(logging_steps(), observer(client, offline=True))
    [journal] = journals(spool)
    [segment] = journal.folder.glob("*.log")
    records = journal_steps(segment)
    assert len(records) >= 3, "the run should have been journaled in several metric records"
    offset, (lost, _) = list(records.items())[len(records) // 2]
    data = bytearray(segment.read_bytes())
    data[offset + 40] ^= 0x01
    segment.write_bytes(bytes(data))

    code, out = sync_cli(spool, capsys)
    assert code == 1 and "QUARANTINED: 1 entries" in out and "damaged" in out
    run_id = db.runs.find_one({})["_id"]
    assert db.runs.find_one({"_id": run_id})["status"] == "COMPLETED"  # the records after the damage were applied
    assert sorted(stored_steps(db, run_id) + lost) == list(range(STEPS))
    [entry] = quarantine.entries(spool)
    kept = bytearray(entry.path.read_bytes())
    kept[40] ^= 0x01  # the person who looks at it can mend it: every lost point is in the quarantine
    assert bson.decode(bytes(kept[12:]))["steps"] == lost
    assert not journal.folder.exists() and str(run._id).startswith("offline-")
    assert sync_cli(spool, capsys)[0] == 1  # still listed, still non-zero, until a person removes it
    code, out = sync_cli(spool, capsys, "--discard-quarantine")
    assert code == 0 and "discarded 1" in out and quarantine.entries(spool) == []


def test_a_journal_cut_at_60_percent_keeps_what_is_before_and_says_what_is_gone(client, db, spool, capsys,
                                                                                 mock_sync):
    run_experiment(logging_steps(), observer(client, offline=True))
    [journal] = journals(spool)
    [segment] = journal.folder.glob("*.log")
    records = journal_steps(segment)
    cut = int(segment.stat().st_size * 0.6)
    with open(segment, "r+b") as handle:
        handle.truncate(cut)
    code, out = sync_cli(spool, capsys)
    assert code == 1 and "damaged" in out
    kept = [step for steps, end in records.values() if end <= cut for step in steps]  # records wholly before the cut
    run_id = db.runs.find_one({})["_id"]
    assert stored_steps(db, run_id)[:len(kept)] == kept and db.runs.find_one({"_id": run_id})["status"] == "RUNNING"


def test_a_full_disk_mid_run_warns_once_holds_the_records_and_journals_them_when_space_returns(
        client, db, spool, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="sacred_gpu")
    with FullDisk(room=3000).installed() as disk:
        run = run_experiment(logging_steps(hook=lambda step: step == 200 and disk.free()),
                             observer(client, offline=True))
    assert disk.refused > 0 and run.result == "done"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot write the journal" in m for m in messages) == 1
    assert sum("can be written again" in m for m in messages) == 1
    [result] = sync_spool(spool, client=client)
    assert result.outcome == "synced" and result.set_aside == 0 and quarantine.entries(spool) == []
    assert stored_steps(db, result.run_id) == list(range(STEPS))


def test_a_real_full_filesystem_then_space_freed(client, db, tmp_path, monkeypatch, caplog):
    """The same on a real 1 MiB tmpfs, where the machine lets the test mount one (root on Linux)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "none", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the file-layer test above covers the same path")
    try:
        filler = mount / "filler"
        with open(filler, "wb") as handle:  # leave two pages: the run's first records fill them
            handle.write(b"f" * (shutil.disk_usage(mount).free - 8192))
        caplog.set_level(logging.WARNING, logger="sacred_gpu")

        def hook(step):
            if step == 1500:
                filler.unlink()

        run_experiment(logging_steps(steps=2000, pause=0.0005, hook=hook),
                       observer(client, offline=True, spool_dir=mount / "spool"))
        assert any("No space left on device" in r.getMessage() for r in caplog.records)
        [result] = sync_spool(mount / "spool", client=client)
        assert result.outcome == "synced" and result.set_aside == 0
        assert stored_steps(db, result.run_id) == list(range(2000))
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# -- 2. refused and unencodable records ---------------------------------------------------------------------------
def test_an_unencodable_record_is_quarantined_and_the_records_after_it_go_on(client, spool, tmp_path):
    journal = Journal.create(spool, {"db_name": "sacred"})
    recorder = Recorder(journal, None, "r1")
    recorder.submit({"op": "update_run", "fields": {"bad": object()}})
    recorder.submit({"op": "update_run", "fields": {"good": 1}})
    [entry] = quarantine.entries(spool)
    assert entry.kind == "unencodable" and "object" in entry.path.read_text() and "InvalidDocument" in entry.reason
    assert [rec["fields"] for rec, _ in journal.read(journal.acked())] == [{"good": 1}]


# -- 4, 5. values past 16 MB, names that are no keys --------------------------------------------------------------
def test_a_twenty_megabyte_config_value_is_stored_in_gridfs_and_read_back(client, db):
    blob = "c" * (20 * 1024 * 1024)

    def main(_run):
        _run.info["notes"] = "n" * (17 * 1024 * 1024)
        _run.log_scalar("loss", 1.0, 0)
        time.sleep(0.2)  # several heartbeats carry the same large info value
        raise ValueError("E" * (17 * 1024 * 1024))

    with pytest.raises(ValueError):
        run_experiment(main, observer(client), config={"data": {"blob": blob}})
    doc = db.runs.find_one({})
    assert doc["status"] == "FAILED" and len(bson.encode(doc)) < 16 * 1024 * 1024
    assert doc["config"]["data"]["blob"]["sacred_gpu_stub"] == "gridfs"
    run = RunStore(db).run(doc["_id"])
    assert run["config"]["data"]["blob"] == blob and run["info"]["notes"] == "n" * (17 * 1024 * 1024)
    assert "E" * 1000 in "".join(run["fail_trace"])
    assert db["fs.files"].count_documents({"filename": {"$regex": "^stub://"}}) == 3  # each value uploaded once


def test_a_nul_in_a_metric_name_and_names_that_differ_by_dot_or_comma(observer, db):
    def main(_run):
        _run.log_scalar("x\x00y", 1.0, 0)
        _run.log_scalar("val.loss", 1.0, 0)
        _run.log_scalar("val,loss", 5.0, 0)
        time.sleep(0.15)

    run = run_experiment(main, observer)
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED" and doc["heartbeat"] is not None
    assert {m["name"] for m in db.metrics.find({"run_id": run._id})} == {"x\x00y", "val.loss", "val,loss"}
    assert doc["metric_rollups"]["val%2Eloss"]["max"] == 1.0 and doc["metric_rollups"]["val,loss"]["max"] == 5.0
    assert doc["metric_rollups"]["x%00y"]["count"] == 1


# -- 7. a spool that cannot be written ----------------------------------------------------------------------------
def test_no_writable_spool_anywhere_runs_to_completion_without_a_phantom_run_and_says_so_once(
        client, db, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="sacred_gpu")
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "a-file"))
    run = run_experiment(logging_steps(steps=20), observer(client, spool_dir=tmp_path / "a-file" / "spool"))
    assert run.result == "done" and run.status == "COMPLETED"
    assert db.runs.count_documents({}) == 0 and db.metrics.count_documents({}) == 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "NOT recorded" in errors[0].getMessage()


def test_a_fallback_folder_made_by_someone_else_is_never_used(client, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="sacred_gpu")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    planted = tmp_path / f"sacred-gpu-spool-{os.getuid()}"
    planted.mkdir(mode=0o777)
    os.chmod(planted, 0o777)
    (tmp_path / "not-a-dir").write_text("")
    run = run_experiment(logging_steps(steps=5), observer(client, offline=True, spool_dir=tmp_path / "not-a-dir"))
    assert list(planted.iterdir()) == []
    used = private_fallback()
    assert used != planted and stat.S_IMODE(used.stat().st_mode) == 0o700
    [kept] = [r.getMessage() for r in caplog.records if "is kept in" in r.getMessage()]
    spool = Path(kept.split("sacred-gpu sync ")[-1].rstrip("`"))
    [journal] = journals(spool)
    assert spool.parent == tmp_path and spool.name.startswith(planted.name) and str(run._id).endswith(
        journal.folder.name.removeprefix("run-"))


def test_the_journal_holds_no_password_and_sync_takes_it_from_the_environment(spool, monkeypatch):
    url = "mongodb://bob:s3cret@127.0.0.1:9/?serverSelectionTimeoutMS=200"
    run_experiment(lambda: 1, GpuMongoObserver(url=url, offline=True, nvml=FakeNvml([]), sampling=False))
    [journal] = journals(spool)
    text = (journal.folder / "state.json").read_text()
    assert "s3cret" not in text and "mongodb://bob@127.0.0.1:9/" in text
    seen = []
    import sacred_gpu.connection as connection_module

    real = connection_module.open_client
    monkeypatch.setattr(connection_module, "open_client", lambda url=None, client=None, **kw: seen.append(url)
                        or real(url, client, **kw))
    monkeypatch.setenv("SACRED_GPU_MONGO_PASSWORD", "s3cret")
    [result] = sync_spool(spool, timeout=0.5)
    assert result.outcome == "unreachable"
    assert seen == ["mongodb://bob:s3cret@127.0.0.1:9/?serverSelectionTimeoutMS=200"]
