"""README's tables of the system metrics and of their Prometheus gauges, generated from the catalog's rows
(``sacred-gpu metrics-table [--prometheus]``; a test checks that README holds them as generated)."""

from __future__ import annotations

from sacred_gpu.schema.catalog import CATALOG, GPU_TEMPLATE, PROMETHEUS_SCALE


def markdown_table() -> str:
    """The README's table of system metrics."""
    rows = ["| name | unit | tier | window | source | what |", "| --- | --- | --- | --- | --- | --- |"]
    rows += [
        f"| `{s.name}` | {s.unit} | {s.tier} | {s.window} | `{s.source}` | {s.description} |" for s in CATALOG
    ]
    return "\n".join(rows)


def prometheus_table() -> str:
    """The README's table of the gauges sacred-board's ``/metrics`` serves for the catalog's rows, with DCGM
    exporter's field for the same reading."""
    rows = ["| Prometheus gauge | labels | from | DCGM exporter |", "| --- | --- | --- | --- |"]
    for spec in CATALOG:
        labels = "run, GPU, MIG" if "{j}" in spec.name else "run, GPU" if spec.name.startswith(GPU_TEMPLATE) else "run"
        scale = PROMETHEUS_SCALE[spec.unit]
        factor = {0.01: " / 100", 2.0**20: " x 2^20", 2.0**30: " x 2^30", 1e6: " x 10^6"}.get(scale, "")
        source = f"`{spec.name}`{factor} ({spec.unit})"
        rows.append(f"| `{spec.prometheus}` | {labels} | {source} | {f'`{spec.dcgm}`' if spec.dcgm else '-'} |")
    return "\n".join(rows)
