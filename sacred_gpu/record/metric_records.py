"""Metric series of any length as records: Sacred's document up to a cap, decimated after it, chunks for the rest.

Up to :data:`~sacred_gpu.schema.METRIC_CAP` points a series is stored exactly as Sacred stores it. Past the cap,
Sacred's document keeps one point in 2, then in 4, 8, ... (see :func:`_stages`) and, at the end of the run, the last
point: it spans the whole series in at most about twice ``cap`` points, sparser the later they come. Every point past
the cap goes, at full resolution, into chunk documents of at most :data:`~sacred_gpu.schema.CHUNK_POINTS` points,
their columns packed (:func:`~sacred_gpu.schema.pack_column`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bson import ObjectId

from sacred_gpu import schema
from sacred_gpu.record.writer import record


def _stages(cap: int):
    """(first index, stride, span) of each decimation stage past the cap: stage k keeps ``max(1, cap >> k)``
    points one every ``2**k``, so each stage until the cap is halved away spans ``cap`` points, later ones double."""
    start, stage = cap, 1
    while True:
        stride = 1 << stage
        span = max(1, cap >> stage) * stride
        yield start, stride, span
        start, stage = start + span, stage + 1


def _kept(start: int, stop: int, cap: int) -> list[int]:
    """Indices in ``[start, stop)`` of the points Sacred's document keeps (offsets from ``start``)."""
    kept = list(range(start, min(stop, cap)))
    if stop > cap:
        for first, stride, span in _stages(cap):
            if first >= stop:
                break
            if first + span <= start:
                continue
            low = max(start, first)
            ends = low + (stride - 1 - (low - first) % stride)  # the next index that ends a run of ``stride``
            kept.extend(range(ends, min(stop, first + span), stride))
    return [i - start for i in kept]


class MetricSeries:
    """One metric of one run: turns batches of points into ``metric`` and ``chunk`` records."""

    def __init__(self, name: str, metric_id: ObjectId, *, system: bool = False, cap: int | None = None,
                 chunk_points: int | None = None) -> None:
        """``system``: one of the observer's own series (marked :data:`schema.SYSTEM_ORIGIN`, uncapped: their window
        thinning bounds them); ``cap`` and ``chunk_points`` default to :data:`schema.METRIC_CAP` and
        :data:`schema.CHUNK_POINTS`."""
        self.name, self.metric_id, self.system, self.capped = name, metric_id, system, not system
        self.cap = cap or schema.METRIC_CAP
        self.chunk_points = chunk_points or schema.CHUNK_POINTS
        self.count = 0  #: points received so far
        self._last: tuple[Any, Any, Any] | None = None  # the last point, if Sacred's document does not have it
        self.rollup: dict[str, Any] = {}  #: run-level summary, see :meth:`update_rollup`

    def records(self, steps: Sequence, values: Sequence, stamps: Sequence,
                next_seq: Callable[[], int]) -> list[dict[str, Any]]:
        """The records that store this batch; ``next_seq`` numbers them (increasing within the run)."""
        start, stop = self.count, self.count + len(steps)
        self.count = stop
        self.update_rollup(steps, values)
        records = []
        if not self.capped or stop <= self.cap:
            keep = range(len(steps))
        else:
            keep = _kept(start, stop, self.cap)
            for offset in range(max(0, self.cap - start), len(steps), self.chunk_points):
                part = slice(offset, offset + self.chunk_points)
                records.append(record("chunk", chunk_id=schema.new_object_id(), metric_id=self.metric_id,
                                      name=self.name, seq=next_seq(), steps=schema.pack_column(steps[part]),
                                      values=schema.pack_column(values[part]),
                                      timestamps=schema.pack_column(stamps[part])))
        if isinstance(keep, range):  # every point: slices, no per-point work
            kept_steps, kept_values, kept_stamps = list(steps), list(values), list(stamps)
        else:
            kept_steps, kept_values, kept_stamps = ([column[i] for i in keep] for column in (steps, values, stamps))
        self._last = None if len(keep) and keep[-1] == len(steps) - 1 else (steps[-1], values[-1], stamps[-1])
        for part in range(0, len(kept_steps), self.chunk_points):
            chosen = slice(part, part + self.chunk_points)
            records.append(self._metric_record(next_seq(), kept_steps[chosen], kept_values[chosen],
                                               kept_stamps[chosen]))
        return records

    def update_rollup(self, steps: Sequence, values: Sequence) -> None:
        """Keep the series' roll-up current with a batch of points (:func:`schema.update_rollup`)."""
        schema.update_rollup(self.rollup, steps, values)

    def closing_records(self, next_seq: Callable[[], int]) -> list[dict[str, Any]]:
        """At the end of the run: the series' last point for Sacred's document, if decimation skipped it."""
        if self._last is None:
            return []
        step, value, stamp = self._last
        self._last = None
        return [self._metric_record(next_seq(), [step], [value], [stamp])]

    def _metric_record(self, seq: int, steps: list, values: list, stamps: list) -> dict[str, Any]:
        extra: dict[str, Any] = {"full_points": self.cap} if self.capped and self.count > self.cap else {}
        if self.system:
            extra[schema.ORIGIN] = schema.SYSTEM_ORIGIN
        return record("metric", metric_id=self.metric_id, name=self.name, seq=seq, steps=steps, values=values,
                      timestamps=stamps, **extra)


def logged_points(rec: dict[str, Any]) -> bool:
    """Whether a journal record holds points the run logged (a ``metric`` record, not of the observer's series)."""
    return isinstance(rec, dict) and rec.get("op") == "metric" and schema.ORIGIN not in rec
