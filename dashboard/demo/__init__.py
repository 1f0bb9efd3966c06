"""``sacred-board --demo``: an in-memory database filled by running the ``examples/`` through the real observer.

:func:`populate` (:mod:`.runs`) records the demo runs into any pymongo-compatible client; :func:`start_demo` also
starts the live run (:mod:`.live`), which goes on training while the board serves. :mod:`.examples`,
:mod:`.simulated`, :mod:`.quiet` and :mod:`.background` are their parts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import mongomock

from dashboard.demo.live import LiveRun
from dashboard.demo.runs import populate
from dashboard.demo.simulated import real_gpu_present
from sacred_gpu import connection
from sacred_gpu.read import DEAD_AFTER, RunStore, connect

__all__ = ["Demo", "populate", "start_demo"]

logger = logging.getLogger(__name__)


@dataclass
class Demo:
    """The demo's database (``store``) and its live run, which :meth:`close` ends."""

    store: RunStore
    live: LiveRun | None

    def close(self) -> None:
        """End the live run (INTERRUPTED, as Ctrl-C would), if it still goes."""
        if self.live is not None and self.live.running:
            logger.info("demo: stopping the live run %s", self.live.run_id)
            self.live.stop()


def start_demo(*, epochs: int | None = None, dead_after: float = DEAD_AFTER, live: bool = True) -> Demo:
    """A fresh mongomock database holding the demo runs (takes some seconds: real training), and the live run
    started (``live``): it trains for a few minutes more while the board serves."""
    client = connection.open_client(client=mongomock.MongoClient())
    started = time.monotonic()
    logger.info("demo: training the example experiments into an in-memory database (no MongoDB needed) ...")
    simulate_gpus = not real_gpu_present()
    run_ids = populate(client, "sacred", epochs=epochs, simulate_gpus=simulate_gpus)
    logger.info("demo: recorded runs %s in %.0f s", run_ids, time.monotonic() - started)
    running = LiveRun(client, "sacred", epochs=epochs, simulate_gpus=simulate_gpus).start() if live else None
    if running is not None:
        logger.info("demo: one more run trains while the board serves (RUNNING for about three minutes)")
    return Demo(connect(client=client, db_name="sacred", dead_after=dead_after), running)
