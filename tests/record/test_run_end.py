"""The end of a run races Sacred's last heartbeat (issue 21): Sacred joins its heartbeat thread for 2 s only, then
emits the run's end; the last beat, with every point logged since the beat before and the output's tail, may come
after. Every point, the last output and the final status must be recorded, whatever the order.
A second Ctrl-C and an outage that outlasts the run end it in bounded time too (``record/run_end.py``)."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import sacred.run
from pymongo.errors import ServerSelectionTimeoutError

from sacred_gpu import GpuMongoObserver, connect
from sacred_gpu.record.sync import journals, sync_spool
from sacred_gpu.testing.fake_nvml import FakeNvml
from tests.support.experiments import run_experiment
from tests.support.faulty_client import FaultyClient
from tests.support.recording import observer, training
from tests.support.wire_server import WireServer

POINTS = 1000


@pytest.fixture
def late_beat(monkeypatch):
    """Sacred's first beat emitted once its stop event is set starts ``delay["s"]`` seconds late."""
    delay = {"s": 3.0}
    real = sacred.run.Run._emit_heartbeat

    def emit(self):
        # once: Sacred's timer can emit two beats after its stop event (one due just as it is set, then the last)
        if self._stop_heartbeat_event.is_set() and not delay.get("done"):
            delay["done"] = True
            time.sleep(delay["s"])
        real(self)

    monkeypatch.setattr(sacred.run.Run, "_emit_heartbeat", emit)
    return delay


def logs_then(end):
    """Log :data:`POINTS` points, print a last line, then ``end()`` (return a result or raise)."""

    def main(_run):
        time.sleep(0.2)  # a few beats pass first
        for step in range(POINTS):
            _run.log_scalar("loss", 1.0 / (step + 1), step)
        print("the last line")
        return end()

    return main


def steps_stored(db, run_id) -> list[int]:
    return [step for doc in db.metrics.find({"run_id": run_id, "name": "loss"}) for step in doc["steps"]]


def raise_(error):
    def end():
        raise error

    return end


@pytest.mark.parametrize("beat_interval", [0.05, 30.0], ids=["beats-before", "no-beat-before"])
@pytest.mark.parametrize("end, status", [(lambda: 7, "COMPLETED"), (raise_(ValueError("diverged")), "FAILED"),
                                         (raise_(KeyboardInterrupt()), "INTERRUPTED")],
                         ids=["completed", "failed", "interrupted"])
def test_a_last_beat_past_sacreds_two_second_join_is_recorded_whole(client, db, late_beat, beat_interval, end,
                                                                     status):
    watcher = observer(client)
    try:
        run = run_experiment(logs_then(end), watcher, options={"--beat-interval": beat_interval})
        run_id = run._id
    except (ValueError, KeyboardInterrupt):
        run_id = watcher.run_id
    doc = db.runs.find_one({"_id": run_id})
    assert doc["status"] == status and doc["stop_time"] is not None
    assert steps_stored(db, run_id) == list(range(POINTS))
    if status == "COMPLETED":
        assert doc["result"] == 7 and "the last line" in doc["captured_out"]
    if status == "FAILED":
        assert "ValueError: diverged" in "".join(doc["fail_trace"])


def test_a_last_beat_later_than_flush_timeout_is_recorded_when_it_arrives_and_keeps_the_end(client, db, late_beat):
    """The training thread waits ``flush_timeout`` at most; the run's end is recorded after the late beat, so the
    beat can never make the run RUNNING again nor change its stop time or result."""
    late_beat["s"] = 5.0
    watcher = observer(client, flush_timeout=1.0)
    started = time.monotonic()
    run = run_experiment(logs_then(lambda: 7), watcher)
    ended = time.monotonic()
    assert ended - started < 5.0  # returned before the beat (5 s after the end): 0.2 + 2 (Sacred) + 1 (flush_timeout)
    assert db.runs.find_one({"_id": run._id})["status"] == "RUNNING"  # its end waits for the late beat
    watcher._finisher.join(timeout=30)
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED" and doc["result"] == 7 and "the last line" in doc["captured_out"]
    assert doc["stop_time"] == run.stop_time.replace(microsecond=run.stop_time.microsecond // 1000 * 1000)
    assert steps_stored(db, run._id) == list(range(POINTS))
    assert not [t for t in threading.enumerate() if t.name.startswith("sacred-gpu-writer")]


def test_a_late_last_beat_over_tcp(late_beat, spool):
    with WireServer() as server:
        watcher = GpuMongoObserver(url=server.url, nvml=FakeNvml([]), sampling=False)
        run = run_experiment(logs_then(lambda: 7), watcher)
        with server.lock:
            db = server.client["sacred"]
            assert db.runs.find_one({"_id": run._id})["status"] == "COMPLETED"
            assert steps_stored(db, run._id) == list(range(POINTS))


def test_two_million_points_all_in_the_last_beat(client, db):
    """With a 30 s beat interval every point of a short run arrives in the last beat, which takes over 2 s."""
    count = 2_000_000

    def main(_run):
        for step in range(count):
            _run.log_scalar("loss", 0.5, step)

    run = run_experiment(main, observer(client), options={"--beat-interval": 30.0})
    assert db.runs.find_one({"_id": run._id})["status"] == "COMPLETED"
    series = connect(client=client).metrics(run._id, ["loss"])
    assert len(series) == count and series["step"].iloc[-1] == count - 1


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
