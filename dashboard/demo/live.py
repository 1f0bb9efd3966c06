"""The demo's live run: ``train_digits`` still training through the real observer while the board serves.

:class:`LiveRun` runs it on a thread of the board's process (the in-memory database lives there), paced to about
:data:`PACE` seconds an epoch so that its metrics and GPU panels move for a few minutes; then it completes. Its
output goes to its captured output only (:mod:`.quiet`). :meth:`LiveRun.stop` (the board exiting) ends it at its next
epoch as Ctrl-C would: INTERRUPTED.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from typing import Any

from dashboard.demo.examples import OPTIONS, load_example
from dashboard.demo.quiet import run_output_only
from dashboard.demo.runs import DemoRun, gpu_seed, one_blas_thread
from dashboard.demo.simulated import SimulatedLoad, simulated_gpus
from sacred_gpu import GpuMongoObserver
from sacred_gpu.read import connect
from sacred_gpu.testing.fake_nvml import FakeNvml

logger = logging.getLogger(__name__)

#: Seconds an epoch of the live run takes at least (the training itself takes a fraction of it).
PACE = 1.2
#: The live run: 150 epochs of about :data:`PACE` s, three minutes.
LIVE_RUN = DemoRun("train_digits.py", {"epochs": 150, "seed": 6, "hidden_units": [128, 64], "checkpoint_every": 25},
                   tags=("live",), gpu_load=(0.95, 0.9),
                   notes="training while the board serves: its page follows it (RUNNING for about three minutes)")
#: The live run's sampling, s: a few hundred samples over its minutes.
LIVE_SAMPLING = {"sample_interval": 0.5, "slow_sample_interval": 2.0}


class LiveRun:
    """:data:`LIVE_RUN` on a daemon thread, recorded online into ``client[db_name]``.

    ``pace``: seconds an epoch takes at least; ``epochs``: overrides the run's; ``simulate_gpus``: read simulated
    GPUs (else the real NVML).
    """

    def __init__(self, client: Any, db_name: str, *, pace: float = PACE, epochs: int | None = None,
                 simulate_gpus: bool = True, spec: DemoRun = LIVE_RUN) -> None:
        self.client, self.db_name, self.pace, self.spec = client, db_name, pace, spec
        self.config = dict(spec.config, **({"epochs": epochs} if epochs else {}))
        self.simulate_gpus = simulate_gpus
        self.run_id: Any = None  #: set once the run started
        self.status = ""  #: how the run ended: COMPLETED, INTERRUPTED or FAILED
        self._stop = threading.Event()
        self._spool = tempfile.TemporaryDirectory(prefix="sacred-gpu-demo-live-")
        self._thread = threading.Thread(target=self._run, name="sacred-gpu-demo-live", daemon=True)

    def start(self) -> LiveRun:
        """Start the run's thread; returns at once."""
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 30.0) -> bool:
        """End the run at its next epoch (INTERRUPTED) and wait up to ``timeout`` s; whether it ended."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("demo: the live run %s did not end within %.0f s", self.run_id, timeout)
            return False
        self._spool.cleanup()
        return True

    def _run(self) -> None:
        try:
            experiment = load_example(self.spec.script).ex
            gpus = simulated_gpus() if self.simulate_gpus else []
            observer = GpuMongoObserver(client=self.client, db_name=self.db_name, spool_dir=self._spool.name,
                                        offline=False, nvml=FakeNvml(gpus) if self.simulate_gpus else None,
                                        **LIVE_SAMPLING)
            experiment.observers[:] = [observer]

            def started(_run: Any) -> None:  # Sacred captures functions, not methods
                self._started(_run)

            experiment.pre_run_hook(started)
            load = SimulatedLoad(gpus, self.spec.gpu_load, seed=gpu_seed(self.config), epoch_s=self.pace)
            with one_blas_thread(), run_output_only(experiment), load:
                experiment.run(config_updates=self.config, options=OPTIONS)
            self.status = "COMPLETED"
        except KeyboardInterrupt:
            self.status = "INTERRUPTED"
        except Exception:  # noqa: BLE001 - the thread ends; said in the log, the board goes on
            self.status = "FAILED"
            logger.warning("demo: the live run %s failed", self.run_id, exc_info=True)
        logger.info("demo: the live run %s ended: %s", self.run_id, self.status)

    def _started(self, _run: Any) -> None:
        """Pre-run hook: tag the run, and pace its epochs (a wait before each new step's first metric)."""
        self.run_id = _run._id
        store = connect(client=self.client, db_name=self.db_name)
        store.set_tags(self.run_id, self.spec.tags)
        if self.spec.notes:
            store.set_notes(self.run_id, self.spec.notes)
        log_scalar, last_step = _run.log_scalar, [None]

        def paced(name: str, value: Any, step: int | None = None) -> None:
            if step is not None and step != last_step[0]:
                if last_step[0] is not None and self._stop.wait(self.pace):
                    raise KeyboardInterrupt("the board stopped")
                last_step[0] = step
            log_scalar(name, value, step)

        _run.log_scalar = paced
