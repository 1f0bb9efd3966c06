"""Never lose a run: outages mid-run and at the end, offline runs, ``sacred-gpu sync``, killed processes."""

from __future__ import annotations

import datetime
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import bson
import gridfs
import pytest
from pymongo.errors import AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError

from sacred_gpu import GpuMongoObserver, cli
from sacred_gpu.record.journal import Journal
from sacred_gpu.record.sync import journals, sync_spool
from sacred_gpu.record.writer import MongoWriter, record
from sacred_gpu.testing.fake_nvml import FakeNvml, two_gpus
from tests.support.experiments import run_experiment
from tests.support.faulty_client import FaultyClient


def training(tmp: Path, steps: int = 30, pause: float = 0.0, hook=None):
    """A run that logs metrics, info, an artifact, a resource and output."""

    def main(_run):
        (tmp / "weights.bin").write_bytes(b"w" * 1000)
        (tmp / "data.csv").write_text("a,b\n1,2\n")
        _run.open_resource(str(tmp / "data.csv")).close()
        for step in range(steps):
            _run.log_scalar("loss", 1.0 / (step + 1), step)
            _run.log_scalar("acc", step / steps, step)
            if hook:
                hook(step)
            time.sleep(pause)
        _run.info["best"] = {"loss": 1.0 / steps}
        _run.add_artifact(str(tmp / "weights.bin"), metadata={"epoch": steps})
        print("finished training")
        return 0.5

    return main


def observer(client, **kwargs):
    return GpuMongoObserver(client=client, nvml=FakeNvml([]), **{"sampling": False, **kwargs})


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


def test_offline_mode_from_the_environment(client, monkeypatch, spool):
    monkeypatch.setenv("SACRED_GPU_OFFLINE", "1")
    run = run_experiment(lambda: 3, observer(client))
    assert str(run._id).startswith("offline-") and client["sacred"].runs.count_documents({}) == 0
    assert cli.main(["sync", str(spool), "-m", "localhost:27017:elsewhere"]) == 1  # no server there: exit 1
    [journal] = journals(spool)
    assert journal.pending()
    [result] = sync_spool(spool, client=client, db_name="elsewhere")
    assert client["elsewhere"].runs.find_one({"_id": result.run_id})["result"] == 3


def test_outage_mid_run_loses_and_duplicates_nothing(db, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="sacred_gpu")
    faulty = FaultyClient(db.client)

    def hook(step):
        if step == 5:
            faulty.outage(AutoReconnect)
        if step == 25:
            faulty.restore()

    run = run_experiment(training(tmp_path, steps=40, pause=0.02, hook=hook), observer(faulty))
    assert faulty.failures > 0
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED" and doc["result"] == 0.5
    loss = db.metrics.find_one({"run_id": run._id, "name": "loss"})
    assert loss["steps"] == list(range(40)) and len(loss["values"]) == 40


def test_outage_that_outlasts_the_run_ends_in_bounded_time_and_sync_completes_it(db, tmp_path, spool, caplog):
    caplog.set_level(logging.WARNING, logger="sacred_gpu")
    faulty = FaultyClient(db.client)
    ended = {}

    def hook(step):
        if step == 10:
            faulty.outage(ServerSelectionTimeoutError)

    def timed(_run):
        result = training(tmp_path, steps=20, pause=0.01, hook=hook)(_run)
        ended["at"] = time.monotonic()
        return result

    run = run_experiment(timed, observer(faulty, flush_timeout=1.0))
    assert time.monotonic() - ended["at"] < 4  # flush_timeout plus one retry interval at most
    stored = db.runs.find_one({"_id": run._id})
    assert stored["status"] == "RUNNING"  # what reached MongoDB before the outage
    kept = [r.getMessage() for r in caplog.records if "sacred-gpu sync" in r.getMessage()]
    assert len(kept) == 1 and str(spool) in kept[0]

    faulty.restore()
    [result] = sync_spool(spool, client=faulty)
    assert result.outcome == "synced" and result.run_id == run._id
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED" and [a["name"] for a in doc["artifacts"]] == ["weights.bin"]
    assert db.metrics.find_one({"run_id": run._id, "name": "loss"})["steps"] == list(range(20))
    assert journals(spool) == []


def test_sync_is_safe_to_interrupt_and_to_run_again(client, tmp_path, spool):
    run_experiment(training(tmp_path, steps=50), observer(client, offline=True))
    faulty = FaultyClient(client)
    budget = {"calls": 0}
    original = faulty.check

    def fail_midway():
        budget["calls"] += 1
        if budget["calls"] > 12:
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


def test_replayed_records_are_applied_once(db, tmp_path):
    writer = MongoWriter(db)
    journal = Journal.create(tmp_path / "spool", {})
    stamp = datetime.datetime(2026, 1, 1)
    metric = record("metric", metric_id=bson.ObjectId(), name="loss", seq=1, steps=[0, 1],
                    values=[1.0, 0.5], timestamps=[stamp, stamp])
    samples = record("samples", samples=[{"t": stamp, "values": {"sys/cpu/util_pct": 5.0}}])
    (tmp_path / "a.txt").write_text("artifact")
    artifact = record("file", kind="artifact", file_id=bson.ObjectId(),
                      spooled=journal.spool_file(tmp_path / "a.txt"), name="a.txt")
    for retry in (False, True, True):
        for rec in (metric, samples, artifact):
            writer.apply(7, rec, journal.files, {}, retry=retry)
    assert db.metrics.find_one()["steps"] == [0, 1]
    assert db.system_samples.count_documents({}) == 1
    assert db.fs.files.count_documents({}) == 1 and gridfs.GridFS(db).find_one({}).read() == b"artifact"


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


OUTAGE_SECONDS = 60.0


def test_sixty_second_outage_at_100_points_per_second_with_sampling_loses_and_duplicates_nothing(db):
    """The issue's scenario in real time: 100 points/s and 1 Hz sampling through a 60 s outage mid-run."""
    faulty = FaultyClient(db.client)
    obs = GpuMongoObserver(client=faulty, nvml=FakeNvml(two_gpus()), sample_interval=1.0, slow_sample_interval=10.0)
    total = OUTAGE_SECONDS + 10

    def main(_run):
        start, step, phase = time.monotonic(), 0, "before"
        while time.monotonic() - start < total:
            elapsed = time.monotonic() - start
            if phase == "before" and elapsed >= 5:
                faulty.outage(AutoReconnect)
                phase = "outage"
            elif phase == "outage" and elapsed >= 5 + OUTAGE_SECONDS:
                faulty.restore()
                phase = "after"
            _run.log_scalar("loss", 1.0 / (step + 1), step)
            step += 1
            time.sleep(max(0.0, start + step / 100 - time.monotonic()))
        return step

    run = run_experiment(main, obs, options={"--beat-interval": 1.0})
    logged = run.result
    assert faulty.failures > 0 and logged >= 100 * total * 0.95
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED"
    loss = db.metrics.find_one({"run_id": run._id, "name": "loss"})
    assert loss["steps"] == list(range(logged))  # every point once, in order
    samples = [s["t"] for s in db.system_samples.find({"run_id": run._id})]
    assert len(samples) == len(set(samples)) == doc["system"]["samples"] >= total - 3  # no sample lost or doubled
    util = db.metrics.find_one({"run_id": run._id, "name": "sys/gpu0/util_pct"})
    assert util["steps"] == sorted(set(util["steps"])) and len(util["steps"]) >= total - 5


def test_write_error_mid_batch_is_retried_without_duplicates(db, monkeypatch):
    faulty = FaultyClient(db.client)
    obs = GpuMongoObserver(client=faulty, nvml=FakeNvml(two_gpus()), sample_interval=0.02, slow_sample_interval=0.1)

    def main():
        time.sleep(0.15)
        faulty.fail_next_batch_after(3)  # the next bulk insert stores 3 samples, then fails
        time.sleep(0.4)

    run = run_experiment(main, obs, options={"--beat-interval": 0.1})
    assert faulty._batch_failure is None  # the injected failure happened
    times = [s["t"] for s in db.system_samples.find({"run_id": run._id})]
    assert len(times) == len(set(times)) == db.runs.find_one({"_id": run._id})["system"]["samples"]


def test_network_timeouts_are_retried(db, tmp_path):
    faulty = FaultyClient(db.client)

    def hook(step):
        if step == 3:
            faulty.outage(NetworkTimeout, seconds=0.3)

    run = run_experiment(training(tmp_path, steps=30, pause=0.02, hook=hook), observer(faulty))
    assert faulty.failures > 0
    assert db.metrics.find_one({"run_id": run._id, "name": "acc"})["steps"] == list(range(30))


def test_journal_is_trimmed_as_mongodb_acknowledges_it(tmp_path, monkeypatch):
    monkeypatch.setattr("sacred_gpu.record.journal.SEGMENT_BYTES", 2000)
    journal = Journal.create(tmp_path, {"run_id": 1})
    for index in range(100):
        journal.append({"op": "update_run", "fields": {"i": index, "pad": "x" * 100}})
    before = journal.segments()
    assert len(before) > 5
    records = list(journal.read(journal.acked(), max_records=60))
    assert [r["fields"]["i"] for r, _ in records] == list(range(60))
    journal.ack(records[-1][1])
    after = journal.segments()
    assert after == [s for s in before if s >= records[-1][1][0]] and len(after) < len(before) - 2
    assert [r["fields"]["i"] for r, _ in journal.read(journal.acked())] == list(
        range(60, 100))
    with open(journal.folder / f"{journal.segments()[-1]:06d}.bson", "ab") as handle:
        handle.write(b"\x40\x00\x00\x00torn")  # a record cut short by power loss
    assert len(list(journal.read(journal.acked()))) == 40


def test_sources_stored_before_are_reused_by_a_sync_resumed_after_them(client, tmp_path, spool):
    """A sync interrupted between a source file (found already stored) and the run document resumes correctly."""
    run_experiment(lambda: 1, observer(client))  # stores this test suite's sources online
    run_experiment(lambda: 2, observer(client, offline=True))
    [journal] = journals(spool)
    records = list(journal.read(journal.acked()))
    sources = [position for rec, position in records if rec["op"] == "file"]
    writer = MongoWriter(client["sacred"])
    from sacred_gpu.record.replayer import Replayer

    replayer = Replayer(journal, writer, 99, resumed=True)
    for rec, _ in records[: len(sources)]:
        replayer._apply(rec, retry=True)  # the sources, as the interrupted sync applied them
    journal.ack(sources[-1])
    journal.update_state(run_id=99)
    journal.close()
    [result] = sync_spool(spool, client=client)
    assert result.run_id == 99
    doc = client["sacred"].runs.find_one({"_id": 99})
    first = client["sacred"].runs.find_one({"_id": 1})
    assert doc["experiment"]["sources"] == first["experiment"]["sources"]  # the stored copies, not dangling ids


def test_ctrl_c_again_while_the_run_ends_still_journals_its_end(client, spool, monkeypatch):
    """A user presses Ctrl-C twice: the second lands while the observer waits for the sampler to stop."""
    watcher = GpuMongoObserver(client=client, nvml=FakeNvml([]), offline=True, sample_interval=0.05)

    def main(_run):
        _run.log_scalar("loss", 0.5, 0)
        time.sleep(0.2)
        raise KeyboardInterrupt

    def second_ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(watcher, "_final_fields", second_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(main, watcher)
    [result] = sync_spool(spool, client=client, force=True)
    doc = client["sacred"].runs.find_one({"_id": result.run_id})
    assert doc["status"] == "INTERRUPTED" and doc["stop_time"] is not None
    deadline = time.monotonic() + 5
    while any(t.name.startswith("sacred-gpu") and "sampl" in t.name for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the sampler thread was left running"
        time.sleep(0.05)
