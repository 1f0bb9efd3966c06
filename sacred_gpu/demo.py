"""Demo data: run the ``examples/`` experiments through the real observer into a database (in memory by default)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

from sacred_gpu.observer import GpuMongoObserver

logger = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"

#: The runs the demo records: (example script, config updates).
DEMO_RUNS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("train_digits.py", {"learning_rate": 0.001, "epochs": 20}),
    ("train_digits.py", {"learning_rate": 0.003, "epochs": 20, "hidden_units": [128]}),
    ("train_digits.py", {"learning_rate": 0.0003, "epochs": 20, "hidden_units": [32, 32]}),
)


def load_example(filename: str) -> ModuleType:
    """Import a script from ``examples/`` (they live in the source tree, not in the installed package)."""
    path = EXAMPLES_DIR / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the demo runs the examples of a source checkout of sacred-gpu")
    spec = importlib.util.spec_from_file_location(f"sacred_gpu_examples.{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def populate(client: Any, db_name: str = "sacred", *, epochs: int | None = None) -> list[int]:
    """Record :data:`DEMO_RUNS` into ``client[db_name]``; returns the run ids. ``epochs`` overrides each run's."""
    run_ids = []
    for filename, config in DEMO_RUNS:
        experiment = load_example(filename).ex
        experiment.observers[:] = [GpuMongoObserver(client=client, db_name=db_name)]
        updates = dict(config, **({"epochs": epochs} if epochs else {}))
        logger.info("demo: running %s with %s", filename, updates)
        run = experiment.run(config_updates=updates, options={"--beat-interval": 1.0, "--capture": "sys"})
        run_ids.append(run._id)
    return run_ids
