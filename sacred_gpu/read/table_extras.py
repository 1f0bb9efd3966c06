"""Two views of the runs table beyond its rows: runs grouped by a config key with the mean and spread of a metric
roll-up across each group (the seeds of one setting), and sparklines (a few points of a metric's history) for a
page of runs. Both bounded: one aggregation over the runs a filter matches, one over a page's metric documents."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from sacred_gpu import schema
from sacred_gpu.read.errors import BadQuery
from sacred_gpu.read.query import FIELDS, PREFIXES, compile_filter
from sacred_gpu.read.rollup_reads import is_stock_run
from sacred_gpu.read.table_checks import CHECKED

#: Points of a sparkline read per run and metric (at most).
SPARK_POINTS = 50
_MAX_SPARK_POINTS = 200
#: Columns of :meth:`TableExtras.groups` frames.
GROUP_COLUMNS = ("runs", "count", "mean", "std", "min", "max")


def group_path(by: str) -> str:
    """The run document path a group key names: a field of the query language (``experiment``, ``host``) or a
    dotted path under ``config.``, ``host.``, ... (``config.optim.lr``). Raises ``BadQuery`` for anything else."""
    path = FIELDS.get(by, by)
    parts = path.split(".")
    if by in FIELDS or (parts[0] in PREFIXES and len(parts) > 1 and all(parts) and "$" not in path):
        return path
    raise BadQuery(f"cannot group by {by!r}: name a field ({', '.join(FIELDS)}) or a dotted path such as "
                   f"config.lr")


def split_rollup(metric: str) -> tuple[str, str]:
    """``val_loss.min`` as ``("val_loss", "min")``; raises ``BadQuery`` where the roll-up is unknown."""
    name, _, rollup = metric.rpartition(".")
    if not name or rollup not in schema.ROLLUPS:
        raise BadQuery(f"{metric!r} is no metric roll-up: write <metric>.<{'|'.join(schema.ROLLUPS)}>, "
                       f"e.g. val_loss.min")
    return name, rollup


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
        return float(value)
    return None


def _label(value: Any) -> Any:
    """A group key's value as an index label: numbers, text and booleans as they are, anything else as text."""
    value = schema.decoded(value)
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def _order(label: Any) -> tuple:
    """Groups in the key's order: numbers, then text, then the runs without the key."""
    if label is None:
        return (3, "")
    if isinstance(label, (int, float)) and not isinstance(label, bool):
        return (0, label)
    return (1 if isinstance(label, str) else 2, str(label))


def _stats(values: list[float]) -> dict[str, float]:
    """Count, mean, sample standard deviation (NaN for one value), min and max of ``values``."""
    count = len(values)
    if not count:
        return {"count": 0, "mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan}
    mean = math.fsum(values) / count
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (count - 1)) if count > 1 else math.nan
    return {"count": count, "mean": mean, "std": std, "min": min(values), "max": max(values)}


class TableExtras:
    """Group-by and sparkline reads of :class:`~sacred_gpu.read.runs_table.RunsTable` (mixed into the store)."""

    _runs: Any
    _metrics: Any
    dead_after: float

    def groups(self, by: str, metric: str, filter: str | dict | None = None) -> pd.DataFrame:
        """Runs matching ``filter`` grouped by the value of ``by`` (``config.lr``, ``experiment``), with the spread
        of the roll-up ``metric`` (``val_loss.min``) across each group's runs (the seeds of one setting).

        Indexed by the key's value (runs without it: one group, ``None``, last); columns ``runs`` (runs in the
        group), ``count`` (those with a value of the roll-up), ``mean``, ``std`` (sample standard deviation: NaN
        for a single value), ``min``, ``max``. One aggregation groups the filter's runs in the database (``$group``),
        pushing each run's stored roll-up; runs of Sacred's own observer (none stored) get theirs from their series
        by the rule of :func:`schema.update_rollup`, in one more read of those runs' series only.
        """
        path = group_path(by)
        name, rollup = split_rollup(metric)
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        query = compile_filter(filter, now=now, dead_after=self.dead_after)
        match = self._with_metric_conditions(query)  # type: ignore[attr-defined]
        field = f"{schema.METRIC_ROLLUPS_FIELD}.{schema.rollup_key(name)}"
        legacy = schema.legacy_rollup_key(name)
        project: dict[str, Any] = {
            "key": f"${path}", "roll": f"${field}", "format": "$format", "status": "$status",
            "stored": {"$cond": [{"$eq": [{"$ifNull": [f"${schema.METRIC_ROLLUPS_FIELD}", None]}, None]}, 0, 1]}}
        if legacy is not None:  # runs recorded before roll-up keys were unambiguous: read as find_rollup reads them
            project.update(old=f"${schema.METRIC_ROLLUPS_FIELD}.{legacy}", names="$info.metrics.name")
        pipeline = [{"$match": match}, {"$project": project},
                    {"$group": {"_id": "$key", "runs": {"$sum": 1}, "members": {"$push": "$$ROOT"}}}]
        grouped = list(self._runs.aggregate(pipeline))
        stock = {m["_id"] for group in grouped for m in group["members"]
                 if is_stock_run({"format": m.get("format"), "status": m.get("status"),
                            **({schema.METRIC_ROLLUPS_FIELD: {}} if m.get("stored") else {})})}
        computed = self._stock_values(list(stock), [name]) if stock else {}  # type: ignore[attr-defined]
        rows: dict[Any, dict[str, Any]] = {}
        for group in grouped:
            values = []
            for member in group["members"]:
                if member["_id"] in stock:
                    roll = computed.get(member["_id"], {}).get(name)
                else:
                    rollups = {key: value for key, value in ((schema.rollup_key(name), member.get("roll")),
                                                             (legacy, member.get("old"))) if value is not None}
                    roll = schema.find_rollup(rollups, name, member.get("names") if legacy is not None else None)
                value = _number((roll or {}).get(rollup))
                if value is not None:
                    values.append(value)
            label = _label(group["_id"])
            row = rows.setdefault(label, {"runs": 0, "values": []})  # labels made alike by _label: one group
            row["runs"] += group["runs"]
            row["values"] += values
        if not rows:
            self._explain_nothing(query)  # type: ignore[attr-defined]
        else:  # a name no run has says so (with the nearest known one) instead of groups without values
            if all(label is None for label in rows) and path.startswith(CHECKED):
                self._check_field(path)  # type: ignore[attr-defined]
            if not any(row["values"] for row in rows.values()):
                self._check_metric(name)  # type: ignore[attr-defined]
        ordered = sorted(rows.items(), key=lambda item: _order(item[0]))
        index = pd.Index([label for label, _ in ordered], dtype=object, name=by)  # None stays None, not NaN
        return pd.DataFrame([{"runs": row["runs"], **_stats(row["values"])} for _, row in ordered],
                            index=index, columns=list(GROUP_COLUMNS))

    def sparklines(self, run_ids: Iterable[Any], names: str | Iterable[str],
                   points: int = SPARK_POINTS) -> pd.DataFrame:
        """A few points of each metric in ``names`` for each run of ``run_ids``, to draw as a sparkline: a frame
        indexed by run id, a column per metric, each cell a list of ``(step, value)`` (at most ``points``, evenly
        spaced over the series' stored points, first and last included; an empty list where the run has no such
        series). One aggregation reads them for all the runs, picking the points in the database: Sacred's document
        of each series (its head and, past the cap, its decimated rest: the whole run), never the chunks."""
        names = [names] if isinstance(names, str) else list(dict.fromkeys(names))
        run_ids = list(dict.fromkeys(run_ids))
        if not 2 <= points <= _MAX_SPARK_POINTS:
            raise BadQuery(f"points must be between 2 and {_MAX_SPARK_POINTS}, not {points}")
        found: dict[Any, dict[str, list]] = {run_id: {name: [] for name in names} for run_id in run_ids}
        if run_ids and names:
            size = {"$size": {"$ifNull": ["$values", []]}}

            def at(column: str, i: int) -> dict:  # the i-th of ``points`` indices spread evenly over the series
                index = {"$floor": {"$divide": [{"$multiply": [{"$subtract": [size, 1]}, i]}, points - 1]}}
                return {"$arrayElemAt": [f"${column}", {"$max": [0, index]}]}

            project: dict[str, Any] = {"run_id": 1, "name": 1, "n": size}
            for i in range(points):
                project[f"s{i}"], project[f"v{i}"] = at("steps", i), at("values", i)
            match = {"run_id": {"$in": run_ids}, "name": {"$in": names},
                     schema.ORIGIN: None}  # a user's series: no origin
            for doc in self._metrics.aggregate([{"$match": match}, {"$project": project}]):
                picked: list[tuple[Any, float]] = []
                seen: set[int] = set()
                for i in range(points if doc.get("n") else 0):
                    index = math.floor((doc["n"] - 1) * i / (points - 1))
                    value = _number(doc.get(f"v{i}"))
                    if index not in seen and value is not None:
                        picked.append((doc.get(f"s{i}"), value))
                    seen.add(index)
                if doc.get("run_id") in found and doc.get("name") in names:
                    found[doc["run_id"]][doc["name"]] = picked
        return pd.DataFrame.from_dict(found, orient="index", columns=names).rename_axis("id")

