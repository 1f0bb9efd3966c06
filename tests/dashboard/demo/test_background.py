"""The demo's runs ended by a signal, in subprocesses (``dashboard/demo/background.py``)."""

from __future__ import annotations

import logging
import signal

import mongomock
import pytest

from dashboard.demo import background
from sacred_gpu import connection

DB = "demo_db"


def test_no_background_runs_where_signals_cannot_end_processes(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(background, "signals_end_processes", lambda: False)
    with caplog.at_level(logging.INFO, logger="dashboard.demo"):
        assert background.start_background(tmp_path, DB, epochs=3) == []
    assert "need POSIX signals" in caplog.text


@pytest.mark.skipif(not background.signals_end_processes(), reason="POSIX signals")
def test_ctrl_c_reaches_a_background_run_where_the_board_ignores_it(tmp_path):
    """A board started with ``&`` from a script ignores SIGINT, and its children would inherit that."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        job = background.Subprocess(background.BACKGROUND_RUNS[1], tmp_path / "spool", DB, epochs=3)
    finally:
        signal.signal(signal.SIGINT, previous)
    client = connection.open_client(client=mongomock.MongoClient())
    run_id = job.upload(client, DB)
    assert not job.problem and client[DB]["runs"].find_one({"_id": run_id})["status"] == "INTERRUPTED"
