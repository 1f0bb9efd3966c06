"""The demo's live run (``dashboard/demo/live.py``): it keeps recording while the board serves and stops as Ctrl-C
would."""

from __future__ import annotations

import time

import mongomock

from dashboard import cli as demo_cli
from dashboard.demo import simulated
from dashboard.demo.live import LiveRun
from sacred_gpu import connect, connection

DB = "demo_db"


def test_live_run_keeps_recording_while_served_and_stops_as_ctrl_c_would():
    client = connection.open_client(client=mongomock.MongoClient())
    live = LiveRun(client, DB, pace=0.05, epochs=10_000).start()  # would train for many minutes
    store = connect(client=client, db_name=DB, dead_after=demo_cli.DEMO_DEAD_AFTER)

    def grown(than: tuple[int, int]) -> tuple[int, int]:
        """Metric points and GPU samples of the live run, once both exceed ``than`` (waits up to 60 s)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if live.run_id is not None:
                counts = (len(store.metrics(live.run_id)), len(store.system(live.run_id)))
                if counts[0] > than[0] and counts[1] > than[1]:
                    return counts
            time.sleep(0.2)
        raise AssertionError(f"the live run's records did not grow past {than} in 60 s")

    try:
        first = grown((0, 0))
        assert store.runs(f"id == {live.run_id}").loc[live.run_id, "status"] == "RUNNING"
        assert grown(first) > first  # read again later: more points, more samples, still RUNNING
        assert store.runs(f"id == {live.run_id}").loc[live.run_id, "status"] == "RUNNING"
        doc = store.run(live.run_id)
        assert doc["omniboard"]["tags"] == ["live"] and "training while the board serves" in doc["omniboard"]["notes"]
    finally:
        assert live.stop()
    assert not live.running and live.status == "INTERRUPTED"
    doc = store.run(live.run_id)
    assert doc["status"] == "INTERRUPTED" and doc["stop_time"] is not None
    assert "epoch   2/10000" in doc["captured_out"]
    assert [gpu["name"] for gpu in doc["host"]["gpu_inventory"]] == [simulated.SIMULATED_GPU] * 2
