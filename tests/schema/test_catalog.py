"""The catalog of system metrics (``schema/catalog.py``): what each row says of its metric."""

from __future__ import annotations

from sacred_gpu.schema import catalog


def test_every_catalog_row_has_a_conventional_prometheus_name():
    """Base units in the name (``_bytes``, ``_ratio``, ...), one family per row, and a factor for each unit."""
    names = [spec.prometheus for spec in catalog.CATALOG]
    assert len(names) == len(set(names))
    suffixes = {"%": "_ratio", "MiB": "_bytes", "GiB": "_bytes", "MiB/s": "_bytes_per_second", "MHz": "_hertz",
                "W": "_watts", "J": "_joules", "°C": "_celsius"}
    for spec in catalog.CATALOG:
        assert spec.prometheus and spec.prometheus.startswith("sacred_"), spec.name
        assert spec.unit in catalog.PROMETHEUS_SCALE, spec.unit
        if spec.unit in suffixes:
            assert spec.prometheus.endswith(suffixes[spec.unit]), (spec.name, spec.prometheus)
