"""The catalog of system metrics (``schema/catalog.py``): every metric documented in the README."""

from __future__ import annotations

from pathlib import Path

from sacred_gpu.schema import catalog


def test_readme_lists_every_system_metric():
    readme = Path(__file__).parents[2].joinpath("README.md").read_text()
    assert catalog.markdown_table() in readme
