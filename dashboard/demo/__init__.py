"""``sacred-board --demo``: an in-memory database filled by running the ``examples/`` through the real observer.

:func:`populate` (:mod:`.runs`) records the demo runs into any pymongo-compatible client; :mod:`.examples`,
:mod:`.simulated` and :mod:`.background` are its parts.
"""

from __future__ import annotations

import logging
import time

import mongomock

from dashboard.demo.runs import populate
from sacred_gpu import connection
from sacred_gpu.read import DEAD_AFTER, RunStore, connect

__all__ = ["demo_store", "populate"]

logger = logging.getLogger(__name__)


def demo_store(*, epochs: int | None = None, dead_after: float = DEAD_AFTER) -> RunStore:
    """A store on a fresh mongomock database holding the demo runs (takes some seconds: real training)."""
    client = connection.open_client(client=mongomock.MongoClient())
    started = time.monotonic()
    logger.info("demo: training the example experiments into an in-memory database (no MongoDB needed) ...")
    run_ids = populate(client, "sacred", epochs=epochs)
    logger.info("demo: recorded runs %s in %.0f s", run_ids, time.monotonic() - started)
    return connect(client=client, db_name="sacred", dead_after=dead_after)
