"""Faults that need a real MongoDB client over TCP (tests/support/wire_server.py): concurrent syncs, documents the
server refuses as too large, a refused run document, a server that answers only after the run went offline."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pymongo
import pytest

from sacred_gpu import GpuMongoObserver, cli
from sacred_gpu.read.store import RunStore
from sacred_gpu.record import quarantine
from sacred_gpu.record.journal import Journal
from sacred_gpu.record.sync import journals
from sacred_gpu.record.writer import record
from sacred_gpu.testing.fake_nvml import FakeNvml
from tests.support.experiments import run_experiment
from tests.support.wire_server import WireServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server():
    with WireServer() as running:
        yield running


def observer(server: WireServer, **kwargs) -> GpuMongoObserver:
    return GpuMongoObserver(url=server.url, nvml=FakeNvml([]), sampling=False, serverSelectionTimeoutMS=1000,
                            **kwargs)


def steps(count: int = 50):
    def main(_run):
        for step in range(count):
            _run.log_scalar("loss", float(step), step)
        return count

    return main


def test_two_syncs_at_once_upload_each_run_once(server, spool):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for round_ in range(3):
        for _ in range(4):
            run_experiment(steps(), observer(server, offline=True))
        syncs = [subprocess.Popen([sys.executable, "-m", "sacred_gpu.cli", "sync", str(spool), "--mu", server.url],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outputs = [sync.communicate(timeout=120) for sync in syncs]
        for sync, (out, err) in zip(syncs, outputs):
            assert sync.returncode == 0 and "Traceback" not in err, (out, err)
        with server.lock:
            runs = list(server.client["sacred"].runs.find({}, {"_id": 1, "status": 1}))
            points = [step for m in server.client["sacred"].metrics.find({"name": "loss"}) for step in m["steps"]]
        assert len(runs) == 4 * (round_ + 1) and {run["status"] for run in runs} == {"COMPLETED"}
        assert len(points) == 50 * len(runs) and journals(spool) == []
    assert not list(spool.glob("**/*.tmp"))


def test_a_record_over_16_mb_is_set_aside_and_the_other_journals_of_the_spool_are_synced(server, spool, capsys):
    """A journal written before values were moved out of documents holds a 17 MB run document."""
    big = Journal.create(spool, {"db_name": "sacred", "prefix": "", "finished": True})
    big.append(record("insert_run", doc={"status": "COMPLETED", "config": {"blob": "b" * (17 * 1024 * 1024)}}))
    big.append(record("update_run", fields={"result": 1}))
    big.update_state(end=big.end())
    big.close()
    run_experiment(steps(), observer(server, offline=True))
    capsys.readouterr()
    assert cli.main(["sync", str(spool), "--mu", server.url]) == 1
    out = capsys.readouterr().out
    assert "QUARANTINED: 2 entries" in out and "insert_run record" in out and "too large" in out
    with server.lock:
        [run] = list(server.client["sacred"].runs.find({}))
    assert run["status"] == "COMPLETED" and run["result"] == 50 and journals(spool) == []
    [refused, _] = quarantine.entries(spool)
    assert refused.path.stat().st_size > 17 * 1024 * 1024  # the whole record is kept for a person to deal with


def test_a_twenty_megabyte_config_is_stored_through_a_real_server(server):
    blob = "x" * (20 * 1024 * 1024)
    run = run_experiment(steps(), observer(server), config={"blob": blob})
    store = RunStore(pymongo.MongoClient(server.url, serverSelectionTimeoutMS=2000)["sacred"])
    assert store.run(run._id)["status"] == "COMPLETED" and store.run(run._id)["config"]["blob"] == blob


def test_a_refused_run_document_is_reported_as_refused_and_never_as_unreachable(server, caplog):
    caplog.set_level(logging.WARNING, logger="sacred_gpu")
    server.refuse_write("runs", code=121, errmsg="Document failed validation")
    run = run_experiment(steps(), observer(server))
    assert run.result == 50 and str(run._id).startswith("offline-")
    messages = [r.getMessage() for r in caplog.records]
    assert any("refused the run document: WriteError (code 121)" in m for m in messages)
    assert not any("cannot be reached" in m or "did not answer" in m for m in messages)


def test_a_run_document_stored_after_the_run_went_offline_is_completed_by_sync_not_duplicated(server, spool):
    """The insert of the run document is sent, the client gives up at start_timeout, the server applies it later."""
    server.hang_after_hello(only={"insert"}, collection="runs")
    started = time.monotonic()
    run = run_experiment(steps(), observer(server, start_timeout=1.0))
    assert str(run._id).startswith("offline-") and time.monotonic() - started < 10
    server.restore()  # the held insert is applied now: a RUNNING run the training process knows nothing of
    deadline = time.monotonic() + 10
    while not (stored := server.client["sacred"].runs.find_one({})):
        assert time.monotonic() < deadline, "the held insert was never applied"
        time.sleep(0.05)
    assert stored["status"] == "RUNNING" and journals(spool)[0].state()["attempted_run_id"] == stored["_id"]
    assert cli.main(["sync", str(spool), "--mu", server.url]) == 0
    with server.lock:
        [doc] = list(server.client["sacred"].runs.find({}))
    assert doc["_id"] == stored["_id"] and doc["status"] == "COMPLETED" and doc["result"] == 50


def test_writes_carry_the_write_concern_asked_for_and_unacknowledged_writes_are_refused(server):
    from pymongo import monitoring

    class Commands(monitoring.CommandListener):
        def __init__(self) -> None:
            self.concerns: list = []

        def started(self, event):
            if event.command_name in ("insert", "update"):
                self.concerns.append(event.command.get("writeConcern"))

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    listener = Commands()
    run = run_experiment(steps(), observer(server, write_concern={"w": "majority", "wtimeout": 5000},
                                           event_listeners=[listener]))
    with server.lock:
        assert server.client["sacred"].runs.find_one({"_id": run._id})["status"] == "COMPLETED"
    # (under the start's time limit pymongo replaces wtimeout by that limit)
    assert listener.concerns and all(c["w"] == "majority" for c in listener.concerns)
    assert {"w": "majority", "wtimeout": 5000} in listener.concerns
    with pytest.raises(ValueError, match="w=0"):
        observer(server, write_concern={"w": 0})


def _odd_keys(value) -> bool:
    """Whether a document (or an update statement) has a field name with '.' or a leading '$' below its top."""
    if isinstance(value, list):
        return any(_odd_keys(item) for item in value)
    if not isinstance(value, dict):
        return False
    operators = ("q", "u", "upsert", "multi", "$set")  # an update statement's own keys are not field names
    return any((key not in operators and ("." in key or key.startswith("$"))) or _odd_keys(item)
               for key, item in value.items())


@pytest.mark.parametrize("code", [57, 52])
def test_keys_with_dots_are_stored_as_they_are_and_as_sacred_stores_them_where_the_server_refuses(server, caplog,
                                                                                                  code):
    """info and result keep their keys as logged; a server refusing '.' or '$' in field names (MongoDB before 5.0)
    gets Sacred's form, with no two keys made one (``x.y`` beside ``x,y``), and one WARNING says so."""
    caplog.set_level(logging.WARNING, logger="sacred_gpu")

    def main(_run):
        _run.info.update({"x.y": 1, "x,y": 2, "$z": {"a.b": 3}})
        return {"acc.top1": 0.9}

    store = RunStore(pymongo.MongoClient(server.url, serverSelectionTimeoutMS=2000)["sacred"])
    first = run_experiment(main, observer(server))
    assert store.run(first._id)["info"] == {"x.y": 1, "x,y": 2, "$z": {"a.b": 3}}
    assert store.run(first._id)["result"] == {"acc.top1": 0.9}

    server.refuse_write("runs", code=code, errmsg=f"field names refused (code {code})", match=_odd_keys)
    second = run_experiment(main, observer(server))
    doc = store.run(second._id)
    assert doc["status"] == "COMPLETED" and isinstance(second._id, int)
    assert doc["info"] == {"x%2Ey": 1, "x,y": 2, "@z": {"a,b": 3}} and doc["result"] == {"acc,top1": 0.9}
    said = [r.getMessage() for r in caplog.records if "refused field names" in r.getMessage()]
    assert len(said) == 1 and f"code {code}" in said[0]
