"""The read strategy for plots of long series: how much of a series or of a run's samples a plot reads, so that a
page reads no more than it draws. Works on a plot context (:attr:`sacred_gpu.read.views.RunPlots.context`).

- a metric: its overview (Sacred's document and the chunks' previews) or, zoomed, every point of the range unless
  the range likely holds more than :data:`RANGE_READ_LIMIT` points;
- system samples: every sample where the run (or the zoomed range) has at most :data:`SAMPLE_READ_LIMIT`, else the
  heartbeat windows of the observer's own series, else time buckets averaged in the database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sacred_gpu.read.views import system_panels

#: Samples a system plot reads whole; past them it reads the heartbeat windows (or the samples of a zoomed range
#: holding at most this many).
SAMPLE_READ_LIMIT = 20_000
#: Points a zoomed metric plot reads whole; a range likely holding more is drawn from the overview's points in it.
RANGE_READ_LIMIT = 250_000


@dataclass(frozen=True)
class MetricPoints:
    """Points of one metric to draw: ``frame`` (columns ``name``, ``step``, ``timestamp``, ``value``), whether it
    holds ``every`` point of the range (or of the series), and the series' ``total`` count where known."""

    frame: pd.DataFrame
    every: bool
    total: int | None


def context_time(text: str | None) -> dt.datetime | None:
    """A time of a plot context (``start``, ``stop``: ISO strings) as a naive UTC datetime; None where unknown."""
    return pd.Timestamp(text).to_pydatetime() if text else None


def expected_points(context: Mapping[str, Any], name: str, by_step: bool, low: Any, high: Any) -> float | None:
    """About how many points of ``name`` lie in [low, high] (steps, or datetimes), were they spread evenly over
    its steps (or over the run's time); None where the run document does not say."""
    rollup = (context.get("rollups") or {}).get(name) or {}
    count, first, last = rollup.get("count"), rollup.get("first_step"), rollup.get("last_step")
    if count is None:
        return None
    if by_step and isinstance(first, (int, float)) and isinstance(last, (int, float)):
        span, width = last - first, high - low
    else:
        start, stop = context_time(context.get("start")), context_time(context.get("stop"))
        if start is None or stop is None or by_step:
            return None
        span, width = (stop - start).total_seconds(), (high - low).total_seconds()
    return count if span <= 0 else count * min(1.0, max(0.0, width / span))


class PlotReads:
    """The plot reads of :class:`~sacred_gpu.read.store.RunStore` (its series reads do the reading)."""

    def metric_points(self, context: Mapping[str, Any], name: str, by_step: bool = True,
                      low: Any = None, high: Any = None) -> MetricPoints:
        """Metric ``name`` of the run of ``context`` to draw against steps (``by_step``) or time: its overview, or
        with ``low``/``high`` (steps, or naive UTC datetimes) every point of that range where it likely holds at most
        :data:`RANGE_READ_LIMIT` (else the overview's points in the range)."""
        run_id = context["run_id"]
        total = ((context.get("rollups") or {}).get(name) or {}).get("count")
        zoomed = low is not None and high is not None
        if zoomed:
            expected = expected_points(context, name, by_step, low, high)
            if expected is None or expected <= RANGE_READ_LIMIT:
                frame = self.metric_range(run_id, name, low, high, timestamps=False) if by_step else \
                    self.metric_range(run_id, name, start_time=low, end_time=high)
                return MetricPoints(frame, True, total)
        frame = self.metric_overview(run_id, [name], timestamps=not by_step)  # by step: no times to read
        every = total is None or len(frame) >= total  # no count: Sacred's observer wrote it, whole in its document
        if zoomed:
            x = pd.to_numeric(frame["step"], errors="coerce") if by_step else \
                pd.to_datetime(frame["timestamp"], errors="coerce")
            frame = frame[(x >= low) & (x <= high)]
        return MetricPoints(frame, every, total)

    def system_points(self, context: Mapping[str, Any], bounds: tuple[dt.datetime, dt.datetime] | None = None,
                      max_points: int = 5_000) -> tuple[pd.DataFrame, str]:
        """System samples of the run of ``context`` to draw (DatetimeIndex, ``sys/...`` columns) over ``bounds``
        or the whole run, and a note saying what they are: every sample, the heartbeat windows of the observer's
        series the panels draw, or (runs without them) at most ``max_points`` time buckets averaged in the
        database."""
        run_id, samples = context["run_id"], context.get("samples")
        start, stop = context_time(context.get("start")), context_time(context.get("stop"))
        expected = samples
        if bounds is not None and samples and start and stop and stop > start:
            expected = samples * (bounds[1] - bounds[0]).total_seconds() / (stop - start).total_seconds()
        if expected is not None and expected <= SAMPLE_READ_LIMIT:
            frame = self.system(run_id, *(bounds or (None, None)))
            return frame, f"every sample{' in range' if bounds else ''}: {len(frame):,}"
        names = sorted({column for panel in system_panels(context.get("system_names") or [])
                        for column in panel.columns})  # the series the panels draw, not every sys/ series
        # their step is the window's seconds since the start: the time, without reading timestamps
        windows = self.metric_overview(run_id, names, timestamps=start is None, system=True) if names else None
        if windows is None or windows.empty:
            frame = self.system(run_id, *(bounds or (None, None)), max_points=max_points)
            return frame, f"{len(frame):,} time buckets (means)"
        frame = windows.pivot_table(index="timestamp" if start is None else "step", columns="name", values="value",
                                    aggfunc="last")
        frame.index = pd.DatetimeIndex(frame.index if start is None else pd.Timestamp(start) +
                                       pd.to_timedelta(frame.index.to_numpy(dtype=float), unit="s"), name="time")
        if bounds is not None:
            frame = frame[(frame.index >= bounds[0]) & (frame.index <= bounds[1])]
        return frame, f"{len(frame):,} heartbeat windows (zoom in for every sample)"
