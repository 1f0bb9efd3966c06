"""Shorter garbage-collection pauses in the training loop: the objects alive when a run starts are frozen.

A full collection of CPython's cyclic garbage collector stops every thread while it walks every tracked object of
the process: with the imports of a training script (Sacred, numpy, pymongo; torch adds far more) that is about
90,000 objects and 40-50 ms on a small VM, the longest step of a training loop with or without an observer
(``benchmarks/outage.py``). ``gc.freeze()`` at the start of the run moves those objects to a permanent generation
that collections skip, so a full collection walks only what the run created; ``gc.unfreeze()`` at its end gives
them back. Freed by reference counting as before; only cyclic garbage made of objects older than the run waits
for the end of the run to be collected.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


class GcFreeze:
    """Freezes the heap for one run (``start``) and gives it back (``stop``); leaves a process alone where the
    collector is disabled or something else has already frozen objects (a pre-fork server, the user's own code)."""

    def __init__(self) -> None:
        self.active = False

    def start(self) -> None:
        """Collect once (its pause falls before the training starts), then freeze what is left."""
        if self.active or not gc.isenabled() or gc.get_freeze_count():
            logger.debug("sacred-gpu: gc.freeze skipped (collector disabled or objects already frozen)")
            return
        gc.collect()
        gc.freeze()
        self.active = True
        logger.debug("sacred-gpu: %d objects frozen out of garbage collection for the run", gc.get_freeze_count())

    def stop(self) -> None:
        if self.active:
            self.active = False
            gc.unfreeze()
