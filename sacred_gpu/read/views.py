"""Views: what a page shows of a run, read from its document once and handed over as plain data (no document, no
field name of the schema reaches the board).

- :class:`RunPage` (``RunStore.run_page``): everything a run's page shows, from one read of its document.
- :class:`RunPlots` (``RunStore.run_plots``): what a run's plots need, as JSON for the page, and its system summary.
- :func:`system_panels` (:class:`Panel`): a run's system series grouped into the catalog's panels.
- :data:`OUTPUT_CUT`: the marker where the observer cut a run's captured output.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sacred_gpu import schema
from sacred_gpu.schema import catalog

#: The run document's fields :func:`plot_context` reads.
PLOT_FIELDS = ("info.metrics", "format", schema.SYSTEM_FIELD, "start_time", "stop_time", "heartbeat",
               schema.METRIC_ROLLUPS_FIELD, "status", schema.SAMPLING_FIELD)

#: The observer's cut marker in captured output: its groups are the characters cut and the cap.
OUTPUT_CUT = re.compile(re.escape(schema.OUTPUT_MARKER.strip().format(cut="\0", cap="\1"))
                        .replace("\0", r"(\d+)").replace("\1", r"(\d+)"))


@dataclass(frozen=True)
class RunPlots:
    """What a run's plots need: ``context`` (JSON, for the page: id, start and stop, sample count, the run's own
    metric names and its ``sys/`` series names, roll-up extents, whether it is running) and ``system``, the run's
    system summary (totals and one entry per GPU)."""

    context: dict[str, Any]
    system: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunPage:
    """A run's page: ``row`` (its runs-table row: status as shown, duration, tags, notes, ...), ``doc`` (the run
    document, values moved to GridFS read back), ``plots`` (:class:`RunPlots`), ``files`` (its artifacts, the last of
    each name, as ``RunStore.artifact_files`` lists them) and ``sources`` (``{path: file id}``)."""

    row: dict[str, Any]
    doc: dict[str, Any]
    plots: RunPlots
    files: list[dict[str, Any]]
    sources: dict[str, Any]
    #: one row per user metric, in logging order (:func:`metric_summary`)
    metrics: list[dict[str, Any]] = field(default_factory=list)


#: The columns of a run's metric summary: name, points logged, last value, lowest and highest with their steps.
SUMMARY_COLUMNS = ("name", "count", "last", "min", "min_step", "max", "max_step")


def metric_summary(names: Sequence[str], rollups: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A run's metric summary (:data:`SUMMARY_COLUMNS`) from its roll-ups, ``{name: roll-up}`` (stored ones, or
    those the read side computed for Sacred's own runs); a metric with none has only its name."""
    rows = []
    for name in names:
        roll = rollups.get(name) if isinstance(rollups.get(name), Mapping) else {}
        rows.append({"name": name, **{key: roll.get(key) for key in SUMMARY_COLUMNS[1:]}})
    return rows


def plot_context(doc: Mapping[str, Any]) -> dict[str, Any]:
    """:attr:`RunPlots.context` of a run document read with :data:`PLOT_FIELDS`."""
    user, system_names = schema.series_names(doc)
    system = doc.get(schema.SYSTEM_FIELD) or {}
    start = doc.get("start_time")
    stop = doc.get("stop_time") or doc.get("heartbeat")
    rollups = doc.get(schema.METRIC_ROLLUPS_FIELD) or {}
    sampling = doc.get(schema.SAMPLING_FIELD, "unknown") if doc.get("format") in schema.FORMATS else "stock"
    return {"run_id": doc["_id"], "running": doc.get("status") == schema.RUNNING, "status": doc.get("status"),
            "sampling": sampling,  # {"interval_s", "slow_interval_s"}, None (off), "unknown" (older runs), "stock"
            "start": start.isoformat() if start else None,
            "stop": stop.isoformat() if stop else None, "samples": system.get("samples"),
            "metric_names": user, "system_names": sorted(system_names),
            "rollups": {name: {key: value for key, value in (schema.find_rollup(rollups, name, user) or {}).items()
                               if key in ("count", "first_step", "last_step")} for name in user}}


def run_plots(doc: Mapping[str, Any]) -> RunPlots:
    """The :class:`RunPlots` of a run document read with :data:`PLOT_FIELDS`."""
    system = doc.get(schema.SYSTEM_FIELD)
    return RunPlots(plot_context(doc), dict(system) if isinstance(system, Mapping) else {})


@dataclass(frozen=True)
class Panel:
    """A system panel: ``title``, ``unit`` and the sample columns it draws, ``{column: legend label}``; ``group``
    (GPU, Host, Run's processes), ``kind`` (``lines``, or ``bits``: a bit mask drawn as a timeline of the bits set,
    named by ``bits``) and ``references``, the columns that are a limit or a size (drawn dashed)."""

    key: str
    title: str
    unit: str
    columns: dict[str, str]
    group: str = "GPU"
    kind: str = "lines"
    references: frozenset[str] = frozenset()
    bits: dict[int, str] = field(default_factory=dict)


def system_panels(columns: Sequence[str]) -> list[Panel]:
    """The system panels that have data among ``columns`` (``sys/...`` names), in the catalog's panel order: each
    series goes to the panel its catalog row names, labelled as the row says."""
    found: dict[str, dict[str, str]] = {}
    references: set[str] = set()
    for column in sorted(columns, key=_natural):
        spec = catalog.spec_for(column)
        if spec is not None and spec.panel:
            found.setdefault(spec.panel, {})[column] = catalog.legend_label(column, spec)
            if spec.reference:
                references.add(column)
    for key, drawn in found.items():  # readings first, their limits and sizes after them
        found[key] = dict(sorted(drawn.items(), key=lambda item: item[0] in references))
    return [Panel(panel.key, panel.title, panel.unit, found[panel.key], panel.group, panel.kind,
                  frozenset(references & set(found[panel.key])),
                  dict(catalog.THROTTLE_BITS) if panel.kind == "bits" else {})
            for panel in catalog.PANELS if panel.key in found]


def _natural(text: str) -> list:
    """Sort key putting gpu2 before gpu10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


_SUMMED = {"mean": "mean", "max": "peak", "last": "at the end"}
_TOTALLED = {"mean": "averaged over", "max": "highest of", "sum": "summed over"}


@dataclass(frozen=True)
class SystemSummary:
    """A run's system summary as its page shows it: ``totals``, rows of (label, value, unit) whose label says what
    the aggregate is (per GPU, and how the GPUs' values are combined); ``gpus``, the per-GPU table's ``columns``
    (label with unit) and ``rows`` (one per GPU: index, name, then a value per column, None where not recorded)."""

    totals: list[tuple[str, Any, str]]
    columns: list[str]
    rows: list[list[Any]]


def system_summary(system: Mapping[str, Any]) -> SystemSummary:
    """:class:`SystemSummary` of a run's ``system`` field, labelled by the catalog rows that have a summary."""
    gpus = [gpu for gpu in system.get("gpus") or [] if isinstance(gpu, Mapping)]
    count = system.get("gpu_count") or len(gpus)
    totals: list[tuple[str, Any, str]] = []
    if system.get("gpu_model"):
        totals.append(("GPUs", f"{count}x {system['gpu_model']}", ""))
    columns, fields = [], []
    for spec in catalog.CATALOG:
        if not spec.summary or not spec.summarize:
            continue
        unit, summed = spec.summary_unit or spec.unit, _SUMMED[spec.summarize]
        title = spec.title or spec.field
        if spec.name.startswith(catalog.GPU_TEMPLATE):
            columns.append(f"{title}, {summed} ({unit})")
            fields.append(spec.summary)
            value = system.get(f"gpu_{spec.summary}")
            if spec.total and value is not None:
                per = "" if count == 1 else f", {_TOTALLED[spec.total]} the {count} GPUs"
                totals.append((f"{title}: {summed} of each GPU{per}", value, unit))
        elif system.get(spec.summary) is not None:
            totals.append((f"{title}: {summed}", system[spec.summary], unit))
    if system.get("samples") is not None:
        totals.append(("samples", system["samples"], ""))
    rows = [[gpu.get("index"), gpu.get("name"), *(gpu.get(name) for name in fields)] for gpu in gpus]
    return SystemSummary(totals, ["GPU", "name", *columns], rows)
