"""Reads of a run's metric series and system samples, for :class:`~sacred_gpu.read.store.RunStore`: whole series, an
overview of long ones (chunk previews), a step or time range (only the chunks it overlaps), samples bucketed in
the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from sacred_gpu import schema
from sacred_gpu.read.errors import NotFound


def _joined(parts: list[Any]) -> Any:
    """Columns of consecutive parts (lists, or numpy arrays of packed chunk columns) as one list or array."""
    if all(isinstance(part, list) for part in parts):
        return [item for part in parts for item in part]
    pieces = [pd.Series(part) for part in parts if len(part)]  # an empty Series would make the column object
    return pd.concat(pieces, ignore_index=True).to_numpy() if pieces else []


def _series_frame(name: str, parts: Iterable[Mapping[str, Any]], timestamps: bool = True) -> pd.DataFrame:
    """One series' points from documents holding ``steps``, ``values`` (and ``timestamps``) columns, lists or packed
    (chunks, see :func:`schema.unpack_column`)."""
    keys = ("steps", "values", "timestamps") if timestamps else ("steps", "values")
    columns = {key: [] for key in keys}
    for part in parts:
        for key in keys:
            columns[key].append(schema.unpack_column(part.get(key, [])))
    joined = {key: _joined(column) for key, column in columns.items()}
    return pd.DataFrame({"name": name, "step": joined["steps"],
                         "timestamp": joined["timestamps"] if timestamps else None, "value": joined["values"]})


def _concat_series(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=["name", "step", "timestamp", "value"])
    return pd.concat(frames, ignore_index=True).sort_values(["name", "step"], kind="stable", ignore_index=True)


class SeriesReads:
    """The series and samples reads of :class:`~sacred_gpu.read.store.RunStore`, which sets the collections."""

    _runs: Any
    _metrics: Any
    _chunks: Any
    _samples: Any

    def metrics(self, run_id: Any, names: str | Iterable[str] | None = None, *, system: bool = False
                ) -> pd.DataFrame:
        """The run's metric series at full resolution: columns ``name``, ``step``, ``timestamp``, ``value``.
        ``names``: the series wanted (one name, or several), default all; ``system``: the observer's own series
        (``sys/...``, one point per heartbeat window) instead of those the run logged."""
        query = _series_query(run_id, names, system)
        frames = []
        for doc in self._metrics.find(query):
            full = doc.get("full_points")
            parts = [{key: doc.get(key, [])[:full] for key in ("steps", "values", "timestamps")}]
            if full is not None:  # past the cap: the complete head here, the rest in chunks
                parts += self._chunks.find({"metric_id": doc["_id"]}).sort("seq", 1)
            frames.append(_series_frame(doc["name"], parts))
        return self._of_a_run(run_id, _concat_series(frames))

    def system(self, run_id: Any, start: dt.datetime | None = None, end: dt.datetime | None = None,
               max_points: int | None = None) -> pd.DataFrame:
        """GPU and host samples (columns ``sys/...``) with a DatetimeIndex; averaged into at most ``max_points``
        time buckets in the database when given."""
        match: dict[str, Any] = {schema.SAMPLE_RUN: run_id}
        when = {key: value for key, value in (("$gte", start), ("$lte", end)) if value is not None}
        if when:
            match[schema.SAMPLE_TIME] = when
        total = self._samples.count_documents(match)
        if max_points and total > max_points:
            docs = self._bucketed(run_id, match, max_points)
        else:
            docs = list(self._samples.find(match, {"_id": 0, schema.SAMPLE_RUN: 0}).sort(schema.SAMPLE_TIME, 1))
        if not docs:
            return self._of_a_run(run_id, pd.DataFrame(index=pd.DatetimeIndex([], name="time")))
        frame = pd.DataFrame(docs).set_index(schema.SAMPLE_TIME).rename_axis("time")
        frame.index = pd.DatetimeIndex(frame.index)
        return frame.rename(columns=lambda name: f"sys/{name}").sort_index(axis=1)

    def _bucketed(self, run_id: Any, match: dict, max_points: int) -> list[dict]:
        first = self._samples.find_one(match, sort=[(schema.SAMPLE_TIME, 1)])[schema.SAMPLE_TIME]
        last = self._samples.find_one(match, sort=[(schema.SAMPLE_TIME, -1)])[schema.SAMPLE_TIME]
        width = max(1, int(((last - first).total_seconds() * 1000) // max_points) + 1)  # ms per bucket
        fields = self._sample_fields(run_id)
        offset = {"$subtract": [f"${schema.SAMPLE_TIME}", first]}
        group: dict[str, Any] = {"_id": {"$subtract": [offset, {"$mod": [offset, width]}]},
                                 schema.SAMPLE_TIME: {"$min": f"${schema.SAMPLE_TIME}"}}
        group.update({field: {"$avg": f"${field}"} for field in fields})
        docs = list(self._samples.aggregate([{"$match": match}, {"$group": group},
                                             {"$sort": {schema.SAMPLE_TIME: 1}}]))
        for doc in docs:
            doc.pop("_id", None)
            for field in fields:
                if doc.get(field) is None:
                    doc.pop(field, None)
        return docs

    def _of_a_run(self, run_id: Any, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame``, empty: the run has none of it; raises ``NotFound`` where there is no such run."""
        if frame.empty and self._runs.find_one({"_id": run_id}, {"_id": 1}) is None:
            raise NotFound(f"no run {run_id!r}")
        return frame

    def _sample_fields(self, run_id: Any) -> list[str]:
        """Sample fields of a run: the names of its system series, without the prefix."""
        doc = self._runs.find_one({"_id": run_id}, {"info.metrics": 1, "format": 1}) or {}
        return sorted(name.removeprefix(schema.SYSTEM_PREFIX) for name in schema.series_names(doc)[1])

    def metric_overview(self, run_id: Any, names: str | Iterable[str] | None = None, *,
                        timestamps: bool = True, system: bool = False) -> pd.DataFrame:
        """The run's metric series for an overview plot, without reading every point of long series.

        Columns ``name``, ``step``, ``timestamp``, ``value``. A series of at most ``METRIC_CAP`` points is returned
        whole. Past the cap: the complete head of Sacred's document, then every chunk's ``preview`` (the lowest and
        highest point of each 100), or, if a chunk was written without one, Sacred's decimated document (one point
        in 2, 4, 8, ... after the head). :meth:`metric_range` reads a range at full resolution. ``timestamps=False``
        leaves them unread (column of None): a third less to read where the step is what is plotted. ``system``: as
        in :meth:`metrics`.
        """
        fields = ("steps", "values", "timestamps") if timestamps else ("steps", "values")
        query = _series_query(run_id, names, system)
        frames = []
        for head in self._metrics.find(query, {"name": 1, "full_points": 1}):
            full, parts = head.get("full_points"), []
            if full is not None:
                projection = {"seq": 1, **{f"preview.{key}": 1 for key in fields}}
                previews = sorted(self._chunks.find({"metric_id": head["_id"]}, projection),
                                  key=lambda chunk: chunk["seq"])  # sorted here: mongomock's sort is slow
                if previews and all("preview" in chunk for chunk in previews):
                    parts = [chunk["preview"] for chunk in previews]
                else:
                    full = None  # no previews: the whole decimated document
            parts.insert(0, self._metric_head(head["_id"], full, fields))
            frames.append(_series_frame(head["name"], parts, timestamps))
        return self._of_a_run(run_id, _concat_series(frames))

    def metric_range(self, run_id: Any, name: str, start_step: float | None = None, end_step: float | None = None,
                     *, start_time: dt.datetime | None = None, end_time: dt.datetime | None = None,
                     timestamps: bool = True, system: bool = False) -> pd.DataFrame:
        """Every point of series ``name`` with ``start_step <= step <= end_step`` and ``start_time <= timestamp <=
        end_time`` (bounds left out: unbounded; times naive UTC as stored), same columns as :meth:`metrics`. Reads
        Sacred's document and only the chunks whose ``first_step``..``last_step`` (``first_time``..``last_time``)
        overlap the range; chunks stored without these fields are always read. ``timestamps=False``: as in
        :meth:`metric_overview` (read all the same when a time bound is given). ``system``: as in :meth:`metrics`."""
        timestamps = timestamps or start_time is not None or end_time is not None
        fields = ("steps", "values", "timestamps") if timestamps else ("steps", "values")
        head = self._metrics.find_one({**schema.series_filter(run_id, system), "name": name}, {"full_points": 1})
        if head is None:
            return self._of_a_run(run_id, _concat_series([]))
        full = head.get("full_points")
        parts = [self._metric_head(head["_id"], full, fields)]
        if full is not None:
            clauses = [{"$or": [{low: {"$exists": False}}, {**({high: {"$gte": start}} if start is not None else {}),
                                                            **({low: {"$lte": end}} if end is not None else {})}]}
                       for low, high, start, end in (("first_step", "last_step", start_step, end_step),
                                                     ("first_time", "last_time", start_time, end_time))
                       if start is not None or end is not None]
            chunks = self._chunks.find({"metric_id": head["_id"], **({"$and": clauses} if clauses else {})},
                                       {"seq": 1, **dict.fromkeys(fields, 1)})
            parts.extend(sorted(chunks, key=lambda chunk: chunk["seq"]))
        frame = _series_frame(name, parts, timestamps)
        keep = pd.Series(True, index=frame.index)
        times = pd.to_datetime(frame["timestamp"], errors="coerce") if start_time or end_time else None
        for column, low, high in ((frame["step"], start_step, end_step), (times, start_time, end_time)):
            if low is not None:
                keep &= column >= low
            if high is not None:
                keep &= column <= high
        return frame[keep].sort_values("step", kind="stable", ignore_index=True)

    def _metric_head(self, metric_id: Any, full: int | None, fields: Iterable[str]) -> dict[str, Any]:
        """The ``fields`` of Sacred's document of a series: whole, or the first ``full`` points (at full
        resolution)."""
        projection = {"name": 1, **{key: 1 if full is None else {"$slice": full} for key in fields}}
        return self._metrics.find_one({"_id": metric_id}, projection) or {}


def _series_query(run_id: Any, names: str | Iterable[str] | None, system: bool = False) -> dict[str, Any]:
    """The metric documents of ``run_id``'s user series (or ``system`` series) named ``names`` (one name, several,
    or None: all)."""
    query = schema.series_filter(run_id, system)
    if names is not None:
        query["name"] = {"$in": [names] if isinstance(names, str) else list(names)}
    return query
