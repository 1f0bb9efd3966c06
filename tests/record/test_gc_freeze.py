"""The opt-in ``freeze_gc`` (``record/gc_freeze.py``): the heap frozen for the run when asked, the user's own
otherwise."""

from __future__ import annotations

import gc
import weakref

import pytest

from sacred_gpu import GpuMongoObserver
from tests.support.experiments import run_experiment
from tests.support.recording import observer


def test_the_users_heap_is_theirs_cyclic_garbage_dropped_in_main_is_freed(client):
    class Node:
        def __init__(self) -> None:
            self.peer = self

    model = [Node() for _ in range(10_000)]
    probe = weakref.ref(model[0])
    freed = {}

    def main():
        nonlocal model
        model = None
        gc.collect()
        freed["model"] = probe() is None

    run_experiment(main, observer(client))
    assert freed["model"] and gc.get_freeze_count() == 0


@pytest.mark.parametrize("fails", [False, True])
def test_heap_is_frozen_for_the_run_and_given_back_at_its_end_when_asked(client, db, fails):
    """With ``freeze_gc=True`` objects alive at the start skip the collector's walks during the run (shorter pauses
    in the loop); any end of the run gives them back."""
    seen = {}

    def main():
        seen["frozen"] = gc.get_freeze_count()
        if fails:
            raise RuntimeError("boom")

    assert gc.get_freeze_count() == 0
    if fails:
        with pytest.raises(RuntimeError):
            run_experiment(main, GpuMongoObserver(client=client, sampling=False, freeze_gc=True))
    else:
        run_experiment(main, GpuMongoObserver(client=client, sampling=False, freeze_gc=True))
    assert seen["frozen"] > 1000  # the imports of this process at least
    assert gc.get_freeze_count() == 0
    assert db.runs.find_one()["status"] == ("FAILED" if fails else "COMPLETED")


def test_heap_left_alone_by_default_or_when_already_frozen(client):
    seen = []

    def main():
        seen.append(gc.get_freeze_count())

    run_experiment(main, GpuMongoObserver(client=client, sampling=False))
    assert seen == [0]
    gc.freeze()  # someone else's freeze (a pre-fork server): not ours to undo
    try:
        frozen = gc.get_freeze_count()
        run_experiment(main, GpuMongoObserver(client=client, sampling=False, freeze_gc=True))
        # not frozen again (the count would grow), not unfrozen (it would drop to 0); a few frozen objects are freed
        assert 0 < seen[1] <= frozen and 0 < gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()
