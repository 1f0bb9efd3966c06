"""``sacred-gpu sync`` (``record/sync.py``): offline runs synced equal to online ones, damaged and cut journals,
interrupted syncs, killed processes, passwords from the environment; the journals of a spool, not its quarantine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import bson
import gridfs
import pytest
from pymongo.errors import NetworkTimeout

from sacred_gpu import GpuMongoObserver, cli
from sacred_gpu.record import quarantine
from sacred_gpu.record.journal import Journal
from sacred_gpu.record.sync import journals, sync_spool
from sacred_gpu.testing.fake_nvml import FakeNvml
from tests.support.experiments import run_experiment
from tests.support.faulty_client import FaultyClient
from tests.support.recording import STEPS, logging_steps, observer, stored_steps, training


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


def comparable(db, run_id) -> dict:
    """A run as its readers see it, without what differs between two recordings (ids, times, the host's clock)."""
    doc = db.runs.find_one({"_id": run_id})
    fs = gridfs.GridFS(db)
    metrics = {m["name"]: (m["steps"], m["values"]) for m in db.metrics.find({"run_id": run_id})}
    refs = sorted(ref["name"] for ref in doc["info"].pop("metrics", []))
    artifacts = []
    for artifact in doc.pop("artifacts"):
        stored = fs.get(artifact["file_id"])
        artifacts.append((artifact["name"], stored.read(), stored.metadata, stored._file.get("contentType"),
                          stored.filename.replace(f"/{run_id}/", "/ID/")))
    sources = [(name, fs.get(file_id).read()) for name, file_id in doc["experiment"].pop("sources")]
    for key in ("_id", "start_time", "stop_time", "heartbeat"):
        doc.pop(key)
    doc["meta"].pop("options")
    return {"doc": doc, "metrics": metrics, "refs": refs, "artifacts": artifacts, "sources": sources}


def test_offline_run_synced_later_equals_the_run_recorded_online(client, tmp_path, spool):
    online = run_experiment(training(tmp_path), observer(client, db_name="online"), config={"seed": 1})
    offline = run_experiment(training(tmp_path), observer(client, db_name="synced", offline=True),
                             config={"seed": 1})
    assert str(offline._id).startswith("offline-") and client["synced"].runs.count_documents({}) == 0

    [result] = sync_spool(spool, client=client)
    assert result.outcome == "synced" and result.run_id == 1
    assert comparable(client["online"], online._id) == comparable(client["synced"], 1)
    assert journals(spool) == []  # a synced, finished run leaves no journal behind
    assert sync_spool(spool, client=client) == []  # a second sync finds nothing to do
    assert client["synced"].metrics.count_documents({}) == 2


def test_sync_is_safe_to_interrupt_and_to_run_again(client, tmp_path, spool):
    run_experiment(training(tmp_path, steps=50), observer(client, offline=True))
    faulty = FaultyClient(client)
    budget = {"calls": 0}
    original = faulty.check

    def fail_midway():  # the connection is lost a few calls after the run's document was created
        if client["sacred"].runs.count_documents({}):
            budget["calls"] += 1
        if budget["calls"] > 4:
            raise NetworkTimeout("injected: connection lost during sync")
        original()

    faulty.check = fail_midway
    [first] = sync_spool(spool, client=faulty, timeout=0.5)
    assert first.outcome == "unreachable" and journals(spool)
    [second] = sync_spool(spool, client=client)
    assert second.outcome == "synced" and second.run_id == first.run_id  # the id was kept in the journal
    db = client["sacred"]
    assert db.runs.count_documents({}) == 1 and db.runs.find_one()["status"] == "COMPLETED"
    loss = db.metrics.find_one({"name": "loss"})
    assert loss["steps"] == list(range(50))


CHILD = textwrap.dedent("""
    import sys, time
    from sacred import Experiment
    from sacred_gpu import GpuMongoObserver
    ex = Experiment("killed", save_git_info=False)

    @ex.main
    def main(_run):
        step = 0
        while True:
            _run.log_scalar("loss", float(step), step)
            step += 1
            if step == 50:
                print("fifty", flush=True)
            time.sleep(0.01)

    ex.observers.append(GpuMongoObserver(sampling=False))
    ex.run(options={"--beat-interval": 0.1, "--capture": "sys"})
""")


def test_journal_of_a_process_killed_with_sigkill_syncs(client, spool, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, SACRED_GPU_OFFLINE="1", SACRED_GPU_SPOOL=str(spool))
    child = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "fifty"
        time.sleep(0.5)  # a few heartbeats journal the points
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    [result] = sync_spool(spool, client=client)  # the dead process's journal is not "running"
    assert result.outcome == "synced"
    doc = client["sacred"].runs.find_one({"_id": result.run_id})
    assert doc["status"] == "RUNNING" and doc["experiment"]["name"] == "killed"
    steps = client["sacred"].metrics.find_one({"name": "loss"})["steps"]
    assert len(steps) >= 50 and steps == list(range(len(steps)))
    assert journals(spool)  # kept: the run never finished, later records could not come, but it is not lost


def test_journals_lists_runs_and_not_the_quarantine(tmp_path):
    journal = Journal.create(tmp_path, {})
    (tmp_path / "quarantine" / journal.folder.name).mkdir(parents=True)
    assert [j.folder for j in journals(tmp_path)] == [journal.folder]


def test_a_journal_written_on_another_host_is_running_while_its_heartbeats_arrive(client, db, spool):
    """On a shared folder (NFS) a journal's process may run on another host, where its pid means nothing: the
    journal's own heartbeats (records appended) say whether it is still recording."""
    run = run_experiment(logging_steps(30), observer(client, offline=True))
    [journal] = journals(spool)
    journal.update_state(finished=False, host="gpu-node-17", pid=1)  # as its copy looks while the run goes on
    [result] = sync_spool(spool, client=client)
    assert result.outcome == "running" and "gpu-node-17" in result.detail
    old = time.time() - 600  # no heartbeat for ten minutes: the run is gone
    for segment in journal.folder.glob("*.log"):
        os.utime(segment, (old, old))
    [result] = sync_spool(spool, client=client)
    assert result.outcome == "synced" and sorted(stored_steps(db, result.run_id)) == list(range(30))
    assert run.status == "COMPLETED"
