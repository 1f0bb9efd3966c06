"""The ``examples/`` scripts the demo runs: where they are, how they are imported, the Sacred options of every demo
run."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
#: Sacred options of every demo run: 1 s heartbeats, and output capture that works in any host process.
OPTIONS: dict[str, Any] = {"--beat-interval": 1.0, "--capture": "sys"}


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
