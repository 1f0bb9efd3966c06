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
               schema.METRIC_ROLLUPS_FIELD, "status")

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


def plot_context(doc: Mapping[str, Any]) -> dict[str, Any]:
    """:attr:`RunPlots.context` of a run document read with :data:`PLOT_FIELDS`."""
    user, system_names = schema.series_names(doc)
    system = doc.get(schema.SYSTEM_FIELD) or {}
    start = doc.get("start_time")
    stop = doc.get("stop_time") or doc.get("heartbeat")
    rollups = doc.get(schema.METRIC_ROLLUPS_FIELD) or {}
    return {"run_id": doc["_id"], "running": doc.get("status") == schema.RUNNING,
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
    """A system panel: ``title``, ``unit`` and the sample columns it draws, ``{column: legend label}``."""

    key: str
    title: str
    unit: str
    columns: dict[str, str]


def system_panels(columns: Sequence[str]) -> list[Panel]:
    """The system panels that have data among ``columns`` (``sys/...`` names), in the catalog's panel order: each
    series goes to the panel its catalog row names, labelled as the row says."""
    found: dict[str, dict[str, str]] = {}
    for column in sorted(columns, key=_natural):
        spec = catalog.spec_for(column)
        if spec is not None and spec.panel:
            found.setdefault(spec.panel, {})[column] = catalog.legend_label(column, spec)
    return [Panel(panel.key, panel.title, panel.unit, found[panel.key]) for panel in catalog.PANELS
            if panel.key in found]


def _natural(text: str) -> list:
    """Sort key putting gpu2 before gpu10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]
