"""Applying a journal in order (``record/replayer.py``): a sync resumed after the sources it stored."""

from __future__ import annotations

from sacred_gpu.record.sync import journals, sync_spool
from sacred_gpu.record.writer import MongoWriter
from tests.support.experiments import run_experiment
from tests.support.recording import observer


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
