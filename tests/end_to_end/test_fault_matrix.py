"""The fault matrix (tests/support/fault_matrix.py): for every fault, the run ends as it should, training never waits
longer than ``start_timeout``, and every point, sample and artifact is in MongoDB exactly once or listed by
``sacred-gpu sync`` in the quarantine (which makes it exit non-zero)."""

from __future__ import annotations

import pytest

from tests.support.fault_matrix import FAULTS, FLUSH_TIMEOUT, START_TIMEOUT, Fault, run_fault

#: What the machine may add to a bounded wait (scheduling, Sacred's own start) before a wait counts as unbounded.
SLACK_S = 1.0


@pytest.mark.parametrize("fault", FAULTS, ids=lambda fault: fault.name)
def test_fault(fault: Fault, tmp_path):
    outcome = run_fault(fault, tmp_path)
    assert outcome.duplicates == 0
    assert outcome.runs == (0 if fault.status is None else 1)
    assert outcome.status == fault.status
    assert outcome.stall_s < START_TIMEOUT + SLACK_S, "the training thread waited past start_timeout"
    assert outcome.end_s < FLUSH_TIMEOUT + SLACK_S, "the end of the run waited past flush_timeout"
    assert outcome.sync_code == (1 if fault.set_aside else 0)
    assert bool(outcome.entries) == fault.set_aside
    if fault.complete:
        assert outcome.missing == 0, outcome.entries
        assert outcome.samples_kept == outcome.samples > 0
        assert outcome.artifacts_kept == 1
    else:  # bytes cut off the journal: what is gone is said to be gone, the rest is kept
        assert 0 < outcome.kept < outcome.logged
        assert any("the journal ends at" in entry for entry in outcome.entries)
    if fault.set_aside and fault.complete:
        assert all(entry.split()[0] in ("refused", "damaged") for entry in outcome.entries)
