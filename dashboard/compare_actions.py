"""What the compare page's callbacks do, as plain functions of the board's store (the tests call them): the
compared runs read once, their config diff and legends, overlaid metric figures, GPU overlays."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from dashboard import figures
from dashboard.compare_figures import RunSamples, compared_metric_figure, overlay_figure, text
from sacred_gpu.read import RunStore, context_time, system_panels

logger = logging.getLogger(__name__)

#: The system quantities overlaid for the compared runs: panel key (as the run page's) and title.
OVERLAYS = {"gpu-util": "GPU utilization", "gpu-mem": "GPU memory used"}


@dataclass(frozen=True)
class Compared:
    """The compared runs as read for the page: ``table`` (runs-table rows indexed by id, in id order), ``missing``
    (ids asked for and not found), ``diff`` (:func:`config_diff`), ``runs`` (per run, its plots' context) and
    ``metric_names`` (every user metric any of them logged)."""

    table: pd.DataFrame
    missing: list[Any]
    diff: pd.DataFrame
    runs: dict[Any, dict[str, Any]] = field(default_factory=dict)
    metric_names: list[str] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        """The config keys that differ, the legend's choices."""
        return list(self.diff.index)


def read_compared(store: RunStore, run_ids: Sequence[Any]) -> Compared:
    """The runs ``run_ids`` as :class:`Compared` (raises ``ReadError`` when MongoDB cannot be read)."""
    table = store.runs(ids=list(run_ids), sort="id")
    runs = contexts(store, table)
    names = sorted({name for run in runs.values() for name in run["metric_names"]})
    return Compared(table, [run_id for run_id in run_ids if run_id not in table.index], config_diff(table), runs,
                    names)


def config_diff(table: pd.DataFrame) -> pd.DataFrame:
    """The ``config.*`` columns whose values differ between the runs of ``table`` (a :meth:`RunStore.runs` frame),
    as a frame indexed by config key with one column per run."""
    config = table[[c for c in table.columns if c.startswith("config.")]]
    differing = [c for c in config.columns if config[c].map(repr).nunique(dropna=False) > 1]
    return config[differing].T.rename(index=lambda key: key.removeprefix("config."))


def legend_labels(table: pd.DataFrame, keys: Sequence[str]) -> dict[Any, str]:
    """``{run id: "#id key=value ..."}`` from the chosen config ``keys`` (without the ``config.`` prefix)."""
    labels = {}
    for run_id, row in table.iterrows():
        parts = [f"{key}={text(row.get('config.' + key))}" for key in keys]
        labels[run_id] = " ".join([f"#{run_id}", *parts])
    return labels


def contexts(store: RunStore, table: pd.DataFrame) -> dict[Any, dict[str, Any]]:
    """Per compared run, what its plots need (:attr:`sacred_gpu.read.RunPlots.context`)."""
    return {run_id: store.run_plots(run_id).context for run_id in table.index}


def metric_figures(store: RunStore, runs: Mapping[Any, Mapping[str, Any]], labels: Mapping[Any, str], x_mode: str,
                   smoothing: float) -> dict[str, go.Figure]:
    """One overlaid figure per user metric of the compared runs, its legend naming each run that logged it
    (overviews: never every point of long series)."""
    lines: dict[str, list[figures.Line]] = {}
    for run_id, run in runs.items():
        if not run["metric_names"]:
            continue
        series = store.metric_overview(run_id, run["metric_names"], timestamps=x_mode != "step")
        start = context_time(run["start"])
        for name, frame in series.groupby("name", sort=True):
            lines.setdefault(str(name), []).append(figures.Line(labels.get(run_id, f"#{run_id}"), frame, start))
    return {name: compared_metric_figure(group, x_mode=x_mode, smoothing=smoothing, revision=f"{name}-{x_mode}")
            for name, group in sorted(lines.items())}


def gpu_overlays(store: RunStore, runs: Mapping[Any, Mapping[str, Any]]) -> tuple[dict[str, go.Figure], list[Any]]:
    """One figure per quantity of :data:`OVERLAYS` that any run recorded (title -> figure): a line per run and GPU
    over time since each run's start, samples read as the run page reads them (every sample, or the heartbeat
    windows of long runs: peaks kept); and the ids of the runs without GPU data."""
    drawn: dict[str, list[RunSamples]] = {key: [] for key in OVERLAYS}
    units: dict[str, str] = {}
    without: list[Any] = []
    for run_id, run in runs.items():
        panels = {panel.key: panel for panel in system_panels(run.get("system_names") or []) if panel.key in OVERLAYS}
        if not panels:
            without.append(run_id)
            continue
        samples, _note = store.system_points(run, None, figures.MAX_POINTS)
        for key, panel in panels.items():
            references = getattr(panel, "references", frozenset())  # a limit or a size: not drawn here
            columns = {column: label for column, label in panel.columns.items() if column not in references}
            drawn[key].append(RunSamples(f"#{run_id}", samples, columns, context_time(run.get("start"))))
            units[key] = panel.unit
    return {OVERLAYS[key]: overlay_figure(units[key], lines) for key, lines in drawn.items() if lines}, without
