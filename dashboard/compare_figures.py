"""Pure figure builders of the compare page: frames in, plotly figures out (no database, no Dash).

Metric panels are :func:`dashboard.figures.metric_figure`'s, with the legend always shown (a panel of a metric one
run logged names that run). A system quantity (GPU utilization, GPU memory) is one overlay: a line per run and GPU
against seconds since each run's start, a colour per run and a dash per GPU; parallel coordinates put config
values against a metric roll-up.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard import figures

#: How the GPUs of one run are told apart in an overlay (the run by its colour).
DASHES = ("solid", "dot", "dash", "dashdot", "longdash", "longdashdot")
_AXIS = {"gridcolor": "#ebf0f8", "linecolor": "#c8d0dc", "zerolinecolor": "#c8d0dc", "automargin": True}


@dataclass(frozen=True)
class RunSamples:
    """One run in a system overlay: ``label`` names it in the legend; ``samples`` has a DatetimeIndex (naive UTC)
    and ``sys/...`` columns; ``columns`` the ones to draw, ``{column: device label}`` (``gpu0``); ``start`` its start
    time (naive UTC)."""

    label: str
    samples: pd.DataFrame
    columns: dict[str, str]
    start: dt.datetime | None


def compared_metric_figure(lines: Sequence[figures.Line], **options: Any) -> go.Figure:
    """:func:`dashboard.figures.metric_figure` with its legend shown whatever the number of lines: on the compare
    page a panel of a metric only one run logged still says which run it is."""
    figure = figures.metric_figure(lines, **options)
    figure.update_layout(showlegend=True)
    return figure


def overlay_figure(unit: str, runs: Sequence[RunSamples]) -> go.Figure:
    """One panel for a system quantity of several runs: a line per run and GPU (legend ``"<run> <gpu>"``), x in
    seconds since each run's start, each line downsampled to :data:`dashboard.figures.MAX_POINTS` points."""
    figure = go.Figure(layout={
        "template": "none", "paper_bgcolor": "white", "plot_bgcolor": "white", "height": figures.HEIGHT + 40,
        "margin": {"l": 55, "r": 15, "t": 28, "b": 40}, "hovermode": "closest", "showlegend": True,
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        "xaxis": {**_AXIS, "title": {"text": figures.X_MODES["elapsed"]}},
        "yaxis": {**_AXIS, "title": {"text": html.escape(unit)}, "rangemode": "tozero"}})
    for i, run in enumerate(runs):
        color = figures.COLORS[i % len(figures.COLORS)]
        x = _seconds(pd.DatetimeIndex(run.samples.index), run.start)
        for j, (column, device) in enumerate(run.columns.items()):
            if column not in run.samples.columns:
                continue
            xs, ys = _drawn(x, run.samples[column].to_numpy(dtype=float, na_value=np.nan))
            if not len(xs):
                continue
            name = html.escape(f"{run.label} {device}")
            figure.add_trace(go.Scatter(x=xs, y=ys, mode="lines" if len(xs) > 1 else "markers", name=name,
                                        legendgroup=html.escape(run.label),
                                        line={"color": color, "width": 1.5, "dash": DASHES[j % len(DASHES)]},
                                        marker={"color": color}, meta={"run": run.label, "device": device}))
    if not figure.data:
        figure.add_annotation(text="no samples", xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                              font={"size": 14, "color": "#999"})
    return figure


def _seconds(index: pd.DatetimeIndex, start: dt.datetime | None) -> np.ndarray:
    """Seconds since ``start`` of each sample (since the first sample when the start is unknown)."""
    if not len(index):
        return np.array([], dtype=float)
    origin = pd.Timestamp(start) if start is not None else index.min()
    return np.asarray((index - origin).total_seconds(), dtype=float)


def _drawn(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The finite points of one line, in x order, downsampled."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    chosen = figures.downsample(x, y, figures.MAX_POINTS)
    return x[chosen], y[chosen]


def parcoords_figure(table: pd.DataFrame, keys: Sequence[str], metric_column: str | None) -> go.Figure:
    """Parallel coordinates: one axis per config key (text values as categories), the last one ``metric_column``
    (a rolled-up metric), lines coloured by it."""
    dimensions = []
    for key in keys:
        values = table.get("config." + key)
        if values is None:
            continue
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().all():
            dimensions.append({"label": key, "values": numeric.tolist()})
        else:
            texts = values.map(text)
            categories = sorted(set(texts))
            dimensions.append({"label": key, "values": [categories.index(t) for t in texts],
                               "tickvals": list(range(len(categories))), "ticktext": categories})
    line: dict[str, Any] = {}
    if metric_column and metric_column in table:
        values = pd.to_numeric(table[metric_column], errors="coerce")
        dimensions.append({"label": metric_column, "values": values.tolist()})
        line = {"color": values.fillna(values.min() if values.notna().any() else 0).tolist(),
                "colorscale": "Viridis", "showscale": True}
    figure = go.Figure(go.Parcoords(dimensions=dimensions, line=line) if dimensions else None)
    figure.update_layout(height=360, margin={"l": 60, "r": 60, "t": 50, "b": 30})
    if not dimensions:
        figure.add_annotation(text="the compared runs have no differing config values", showarrow=False)
    return figure


def text(value: Any) -> str:
    """A config value as shown: empty for a missing one."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
