"""Pure figure builders of sacred-board: pandas frames in, plotly figures out (no database, no Dash).

Every trace holds at most :data:`MAX_POINTS` points: longer series are downsampled with tsdownsample's MinMaxLTTB
(the shape of the line and its peaks are kept; the series' lowest and highest points are always kept). Smoothing is
an exponential moving average (:func:`ema`) computed on the points read, before downsampling; the raw line stays,
faint, under the smoothed one.

x modes (:data:`X_MODES`): ``step``; ``wall``, the wall-clock time (UTC, as stored); ``elapsed``, seconds since the
run started. System samples have no step: in ``step`` mode they are drawn against seconds since the start, which is
also the step of Sacred's ``sys/...`` series.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from tsdownsample import MinMaxLTTBDownsampler

from sacred_gpu.read import Panel

#: Most points one trace sends to the browser.
MAX_POINTS = 5_000
#: Most points one system trace sends: about a panel's width in pixels (MinMaxLTTB keeps every peak), so a run's
#: System tab of 20-odd panels stays a few hundred KB (issue 16: <= 300 KB of JSON per page load).
SYSTEM_POINTS = 700
#: x modes and their axis titles.
X_MODES = {"step": "step", "wall": "wall time (UTC)", "elapsed": "time since start (s)"}
COLORS = qualitative.Plotly
RAW_OPACITY = 0.25  # the raw line under a smoothed one
HEIGHT = 300  # px

_DOWNSAMPLER = MinMaxLTTBDownsampler()
_AXIS = {"gridcolor": "#ebf0f8", "linecolor": "#c8d0dc", "zerolinecolor": "#c8d0dc", "automargin": True}


@dataclass(frozen=True)
class Line:
    """One run's series in a metric panel: ``frame`` has columns ``step``, ``timestamp`` (naive UTC) and ``value``,
    in step order (as the store returns them); ``label`` names it in the legend; ``start`` is its run's start time
    (naive UTC) for the ``elapsed`` x mode."""

    label: str
    frame: pd.DataFrame
    start: dt.datetime | None = None


# -- the numbers ----------------------------------------------------------------------------------------------------
def downsample(x: np.ndarray, y: np.ndarray, n_out: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most ``n_out`` points of (``x``, ``y``) to draw: MinMaxLTTB, plus the lowest and highest point.

    ``x`` must be sorted ascending and numeric (datetimes as int64 nanoseconds); ``y`` finite. Fewer points than
    ``n_out``: all of them.
    """
    count = len(x)
    if count <= n_out:
        return np.arange(count)
    chosen = _DOWNSAMPLER.downsample(x, y, n_out=n_out - 2).astype(np.int64)
    return np.unique(np.concatenate([chosen, [int(np.argmin(y)), int(np.argmax(y))]]))


def ema(values: Sequence[float] | np.ndarray, steps: Sequence[float] | np.ndarray | None = None,
        smoothing: float = 0.6) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing), ``smoothing`` in [0, 1).

    With ``steps``, the weight of the past decays with the step distance: ``smoothing ** (gap / unit)`` where
    ``unit`` is the median step gap of the first 1,000 points, so a decimated stretch of a series (a gap of 8 steps
    where the series logs every step) is smoothed as its full-resolution points would be. Non-finite values give
    NaN and are skipped.
    """
    y = np.asarray(values, dtype=float)
    out = np.full(len(y), np.nan)
    if not len(y) or smoothing <= 0:
        return y.copy()
    weights = np.full(len(y), float(smoothing))
    if steps is not None and len(y) > 1:
        gaps = np.diff(np.asarray(steps, dtype=float))
        head = gaps[:1000][gaps[:1000] > 0]
        unit = float(np.median(head)) if len(head) else 0.0
        if unit > 0:
            weights[1:] = float(smoothing) ** np.clip(gaps / unit, 0.0, None)
    last = norm = 0.0
    for i, (value, weight) in enumerate(zip(y.tolist(), weights.tolist())):
        if value != value or value in (float("inf"), float("-inf")):
            continue
        last = last * weight + (1.0 - weight) * value
        norm = norm * weight + (1.0 - weight)
        out[i] = last / norm
    return out


def x_values(frame: pd.DataFrame, x_mode: str, start: dt.datetime | None) -> pd.Series:
    """The x of a metric frame's points in ``x_mode`` (step, wall time, or seconds since ``start``)."""
    if x_mode == "step":
        return pd.to_numeric(frame["step"], errors="coerce")
    stamps = pd.to_datetime(frame["timestamp"], errors="coerce")
    if x_mode == "wall":
        return stamps
    if x_mode == "elapsed":
        if start is None:
            return pd.Series(np.nan, index=frame.index)
        return (stamps - pd.Timestamp(start)).dt.total_seconds()
    raise ValueError(f"unknown x mode {x_mode!r}; choose from {', '.join(X_MODES)}")


def time_x(index: pd.DatetimeIndex, x_mode: str, start: dt.datetime | None) -> pd.Index:
    """The x of system samples: wall time, or seconds since ``start`` (``step`` and ``elapsed`` modes)."""
    if x_mode == "wall" or start is None:
        return index
    return pd.Index((index - pd.Timestamp(start)).total_seconds())


def _points(x: pd.Series | pd.Index, y: pd.Series | np.ndarray, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, finite, downsampled (x, y) of one trace."""
    xs, ys = pd.Series(np.asarray(x)), pd.Series(np.asarray(y, dtype=float))
    keep = xs.notna().to_numpy() & np.isfinite(ys.to_numpy())
    xs, ys = xs[keep], ys[keep]
    order = np.argsort(xs.to_numpy(), kind="stable")
    xs, ys = xs.to_numpy()[order], ys.to_numpy()[order]
    numeric = xs.astype("datetime64[ns]").view(np.int64) if xs.dtype.kind == "M" else xs.astype(float)
    chosen = downsample(numeric, ys, n_out)
    return xs[chosen], ys[chosen]


# -- the figures ----------------------------------------------------------------------------------------------------
def metric_figure(lines: Sequence[Line], *, x_mode: str = "step", smoothing: float = 0.0, log_y: bool = False,
                  x_range: Sequence | None = None, note: str = "", revision: str | None = None) -> go.Figure:
    """A metric panel: one line per :class:`Line` (a run), smoothed by ``smoothing`` (raw line kept faint), log y on
    ``log_y``, x in ``x_mode``, shown over ``x_range`` (in x-mode units) or the whole series; ``note`` says what
    resolution is shown. ``revision``: Plotly's ``uirevision`` (a user's zoom survives updates of the same one)."""
    if x_mode not in X_MODES:
        raise ValueError(f"unknown x mode {x_mode!r}; choose from {', '.join(X_MODES)}")
    figure = _base(x_mode, revision, note)
    for i, line in enumerate(lines):
        color, name = COLORS[i % len(COLORS)], html.escape(line.label)
        if line.frame.empty:
            continue
        x = x_values(line.frame, x_mode, line.start)
        raw_x, raw_y = _points(x, line.frame["value"], MAX_POINTS)
        if not len(raw_x):
            continue
        smooth = smoothing > 0
        figure.add_trace(go.Scatter(x=raw_x, y=raw_y, mode=_mode(len(raw_x)), name=name, legendgroup=name,
                                    showlegend=not smooth,
                                    line={"color": color, "width": 1}, opacity=RAW_OPACITY if smooth else 1.0,
                                    meta={"kind": "raw"}))
        if smooth:
            smoothed = ema(line.frame["value"].to_numpy(dtype=float), line.frame["step"].to_numpy(dtype=float),
                           smoothing)
            smooth_x, smooth_y = _points(x, smoothed, MAX_POINTS)
            figure.add_trace(go.Scatter(x=smooth_x, y=smooth_y, mode=_mode(len(smooth_x)), name=name, legendgroup=name,
                                        line={"color": color, "width": 2}, meta={"kind": "smoothed"}))
    if not figure.data:
        _empty(figure, "no points")
    figure.update_layout(showlegend=len(lines) > 1)
    figure.update_yaxes(type="log" if log_y else "linear")
    _set_range(figure, x_range)
    return figure


def extendable(figure: go.Figure) -> dict[str, Any]:
    """``figure`` as Dash sends it, its traces' x and y as plain lists, so that Plotly's ``extendTraces`` (Dash's
    ``extendData``) can append to them: plotly sends arrays as base64 typed-array specs (lists too: it turns them
    into arrays), which ``extendTraces`` leaves as they are. Datetimes become ISO strings (milliseconds)."""
    sent = figure.to_plotly_json()
    for trace, spec in zip(figure.data, sent["data"]):
        for axis in ("x", "y"):
            if getattr(trace, axis, None) is not None:
                spec[axis] = plain(getattr(trace, axis))
    return sent


def plain(values: Any) -> list:
    """Values of a trace's axis as a JSON list (datetimes as ISO strings, to the millisecond)."""
    array = np.asarray(values)
    if np.issubdtype(array.dtype, np.datetime64):
        return np.datetime_as_string(array, unit="ms").tolist()
    return array.tolist()


def system_figure(panel: Panel, samples: pd.DataFrame, *, x_mode: str = "wall", start: dt.datetime | None = None,
                  x_range: Sequence | None = None, note: str = "", revision: str | None = None) -> go.Figure:
    """A system panel: one line per column of ``panel`` found in ``samples`` (DatetimeIndex, naive UTC; columns
    ``sys/...``), against wall time or seconds since ``start``, each downsampled to :data:`MAX_POINTS` points; a
    limit or size (``panel.references``) dashed in its device's colour; a bit-mask panel as a timeline."""
    figure = _base("wall" if x_mode == "wall" else "elapsed", revision, note)
    x = time_x(pd.DatetimeIndex(samples.index), x_mode, start)
    if panel.kind == "bits":
        _bit_timeline(figure, panel, samples, x)
    colors: dict[str, str] = {}
    for column, label in panel.columns.items() if panel.kind == "lines" else ():
        if column not in samples.columns:
            continue
        xs, ys = _compact(*_points(x, samples[column], SYSTEM_POINTS))
        device = column.split("/")[1] if column.startswith("sys/gpu") else column
        color = colors.setdefault(device, COLORS[len(colors) % len(COLORS)])
        if len(xs):
            dashed = column in panel.references
            figure.add_trace(go.Scatter(x=xs, y=ys, mode=_mode(len(xs)), name=html.escape(label),
                                        line={"color": color, "width": 1 if dashed else 1.5,
                                              "dash": "dash" if dashed else "solid"}))
    if not figure.data and panel.kind == "lines":  # a timeline says why it is empty itself
        _empty(figure, "no samples")
    figure.update_yaxes(title_text=html.escape(panel.unit), rangemode="tozero" if panel.kind == "lines" else None)
    _set_range(figure, x_range)
    return figure


def _compact(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A system trace as few bytes as it can be drawn from: inside a run of equal values only its first and last
    points (a limit, a size, a counter that did not move: two points, the same line), and numbers as float32 (sent
    as typed arrays; a float32 second is exact to 8 ms over a day)."""
    if len(ys) > 2:
        same = np.r_[False, ys[1:-1] == ys[:-2], False] & np.r_[False, ys[1:-1] == ys[2:], False]
        xs, ys = xs[~same], ys[~same]
    if xs.dtype.kind == "f":
        xs = xs.astype(np.float32)
    return xs, ys.astype(np.float32)


def _bit_timeline(figure: go.Figure, panel: Panel, samples: pd.DataFrame, x: pd.Index) -> None:
    """One row per (device, bit) ever set: a mark at each sample where the bit is set."""
    for i, (column, label) in enumerate(panel.columns.items()):
        if column not in samples.columns:
            continue
        masks = pd.to_numeric(samples[column], errors="coerce").fillna(0).astype("int64").to_numpy()
        for bit, reason in panel.bits.items():
            hit = np.flatnonzero(masks & bit)
            if not len(hit):
                continue
            hit = hit[np.linspace(0, len(hit) - 1, min(len(hit), MAX_POINTS)).astype(int)]
            row = html.escape(f"{label}: {reason}")
            figure.add_trace(go.Scatter(x=np.asarray(x)[hit], y=[row] * len(hit), mode="markers", name=row,
                                        showlegend=False, marker={"symbol": "square", "size": 7,
                                                                  "color": COLORS[i % len(COLORS)]}))
    if not figure.data:
        _empty(figure, "no throttling: no reason bit was set" if len(samples) else "no samples")


def _mode(points: int) -> str:
    """Lines, with a marker where a series has a single point (a line of one point draws nothing)."""
    return "lines" if points > 1 else "markers"


def _base(x_mode: str, revision: str | None, note: str) -> go.Figure:
    figure = go.Figure(layout={  # styled here: a named template costs 30-80 ms per figure to validate
        "template": "none", "paper_bgcolor": "white", "plot_bgcolor": "white", "height": HEIGHT,
        "margin": {"l": 55, "r": 15, "t": 28, "b": 40}, "hovermode": "closest",
        "uirevision": revision if revision is not None else x_mode,
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        "xaxis": {**_AXIS, "title": {"text": X_MODES[x_mode]}}, "yaxis": dict(_AXIS)})
    add_note(figure, note)
    return figure


def add_note(figure: go.Figure, note: str) -> None:
    """Write ``note`` (what resolution is shown) at the figure's top right."""
    if note:
        figure.add_annotation(text=html.escape(note), xref="paper", yref="paper", x=1, y=1.0, xanchor="right",
                              yanchor="bottom", showarrow=False, font={"size": 11, "color": "#666"},
                              name="note")


def _empty(figure: go.Figure, text: str) -> None:
    figure.add_annotation(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                          font={"size": 14, "color": "#999"})


def _set_range(figure: go.Figure, x_range: Sequence | None) -> None:
    if x_range is None:
        figure.update_xaxes(autorange=True)
    else:
        figure.update_xaxes(range=[_plotly_value(value) for value in x_range], autorange=False)


def _plotly_value(value: object) -> object:
    if isinstance(value, (dt.datetime, pd.Timestamp)):
        return pd.Timestamp(value).isoformat(sep=" ")
    return value

