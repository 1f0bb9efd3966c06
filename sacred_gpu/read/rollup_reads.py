"""Metric roll-ups for the runs table: filters on them, sorts by them and their values for a page of runs; the
stored roll-up of our runs, and for runs of Sacred's own observer the roll-up computed from their series by the same
rule (:func:`schema.update_rollup`: NaN skipped)."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

from sacred_gpu import schema
from sacred_gpu.read.query import MetricCondition, Query
from sacred_gpu.read.table_checks import value_at


def _rollup_fields(name: str) -> list[str]:
    """Fields of ``metric_rollups`` that may hold metric ``name``'s roll-ups: its :func:`schema.rollup_key`, and the
    older :func:`schema.bson_key` form where that differs (runs recorded before roll-up keys were unambiguous)."""
    legacy = schema.legacy_rollup_key(name)
    return [schema.rollup_key(name)] + ([legacy] if legacy is not None else [])


#: The part of :func:`is_stock_run` an index serves (``format``, see ``schema.INDEXES``; ``$in`` with None matches a
#: missing field too); the rest is checked on the documents it finds.
_STOCK_FILTER: dict[str, Any] = {"format": {"$in": list(schema.STOCK_FORMATS)}}
_STOCK_FIELDS = {"format": 1, "status": 1, schema.METRIC_ROLLUPS_FIELD: 1}


def is_stock_run(doc: Mapping[str, Any]) -> bool:
    """Whether ``doc`` (a run document) is one whose roll-ups must be aggregated from its series: written by Sacred's
    own observer (its ``format``, :data:`schema.STOCK_FORMATS`; no stored roll-ups: ours store them), and not
    QUEUED (no series yet)."""
    return (doc.get("format") in schema.STOCK_FORMATS and schema.METRIC_ROLLUPS_FIELD not in doc
            and doc.get("status") != schema.QUEUED)


class RollupReads:
    """Part of :class:`~sacred_gpu.read.runs_table.RunsTable`, which sets the collections."""

    _runs: Any
    _metrics: Any

    def _with_metric_conditions(self, query: Query) -> dict:
        """The runs filter, with each metric condition on the stored roll-up or, for runs written by Sacred's own
        observer, on the roll-up computed from their series."""
        parts = [query.runs] if query.runs else []
        stock_ids = self._stock_ids() if query.metrics else []
        for condition in query.metrics:
            stored = self._stored_condition(condition)
            parts.append({"$or": [stored, {"_id": {"$in": self._stock_matches(condition, stock_ids)}}]}
                         if stock_ids else stored)
        return {"$and": parts} if len(parts) > 1 else (parts[0] if parts else {})

    def _stock_ids(self) -> list[Any]:
        """The ids of every run :func:`is_stock_run` says is Sacred's: one read, served by the ``format`` index,
        that finds Sacred's runs only."""
        return [doc["_id"] for doc in self._runs.find(_STOCK_FILTER, _STOCK_FIELDS) if is_stock_run(doc)]

    @staticmethod
    def _stored_condition(condition: MetricCondition) -> dict:
        """A metric condition on the stored roll-up: under :func:`schema.rollup_key`, or, as
        :func:`schema.find_rollup` reads them, under the old key of runs recorded before it."""
        field = f"{schema.METRIC_ROLLUPS_FIELD}.{schema.rollup_key(condition.name)}"
        stored = {f"{field}.{condition.rollup}": {condition.op: condition.value}}
        legacy = schema.legacy_rollup_key(condition.name)
        if legacy is None:
            return stored
        old = [{field: {"$exists": False}},
               {f"{schema.METRIC_ROLLUPS_FIELD}.{legacy}.{condition.rollup}": {condition.op: condition.value}},
               {"info.metrics.name": condition.name}]
        owner = schema.legacy_owner(legacy)
        if owner is not None:
            old.append({"info.metrics.name": {"$ne": owner}})
        return {"$or": [stored, {"$and": old}]}

    def _legacy_metric_names(self, docs: list[dict], wanted: list[tuple[str, str]]) -> dict[Any, list[str]]:
        """The metric names (``info.metrics``) of the runs in ``docs`` whose roll-ups of a ``wanted`` metric are
        only under its old key: :func:`schema.find_rollup` needs them to tell an old run from a newer one."""
        pairs = [(schema.rollup_key(name), legacy) for name, _ in wanted
                 if (legacy := schema.legacy_rollup_key(name)) is not None]

        def only_old(rollups: Any) -> bool:
            return isinstance(rollups, dict) and any(key not in rollups and old in rollups for key, old in pairs)

        ids = [doc["_id"] for doc in docs if pairs and only_old(doc.get(schema.METRIC_ROLLUPS_FIELD))]
        if not ids:
            return {}
        return {doc["_id"]: [m.get("name") for m in (doc.get("info") or {}).get("metrics") or [] if isinstance(m, dict)]
                for doc in self._runs.find({"_id": {"$in": ids}}, {"info.metrics.name": 1})}

    def _stock_values(self, run_ids: list[Any], names: list[str]) -> dict[Any, dict[str, dict]]:
        """Roll-ups of runs written by Sacred's own observer (none stored), from their series by the rule our
        observer keeps them by (:func:`schema.update_rollup`: NaN skipped): ``{run id: {metric: roll-up}}``."""
        found: dict[Any, dict[str, dict]] = {}
        if not run_ids or not names:
            return found
        for doc in self._metrics.find({"run_id": {"$in": run_ids}, "name": {"$in": names}},
                                      {"run_id": 1, "name": 1, "steps": 1, "values": 1}):
            pairs = [(step, value) for step, value in zip(doc.get("steps") or [], doc.get("values") or [])
                     if isinstance(value, (int, float)) and not isinstance(value, bool)]
            roll = found.setdefault(doc["run_id"], {}).setdefault(doc["name"], {})
            schema.update_rollup(roll, [step for step, _ in pairs], [value for _, value in pairs])
        return found

    def _stock_matches(self, condition: MetricCondition, run_ids: list[Any]) -> list[Any]:
        """The runs among ``run_ids`` (Sacred's) whose roll-up fits ``condition``, by the same rule as ours."""
        test = _COMPARE[condition.op]
        values = self._stock_values(run_ids, [condition.name])
        return [run_id for run_id, rolls in values.items()
                if (value := rolls.get(condition.name, {}).get(condition.rollup)) is not None
                and test(value, condition.value)]

    def _stock_rollups(self, run_ids: list[Any], wanted: list[tuple[str, str]]) -> dict[Any, dict[str, dict]]:
        """Roll-ups of a page's runs that have none stored (written by Sacred's observer)."""
        return self._stock_values(run_ids, sorted({name for name, _ in wanted})) if wanted else {}

    def _by_metric(self, mongo_filter: dict, field: str, metric: str, rollup: str, direction: int, skip: int,
                   limit: int | None, projection: dict[str, int]) -> list[dict[str, Any]] | None:
        """A page sorted by a metric's roll-up where runs of Sacred's own observer match too (theirs computed by the
        one rule, ours stored: ``field``), runs without a value last, ties by id; None where none of Sacred's
        runs match (then MongoDB sorts on the stored field alone)."""
        every_stock = self._stock_ids()
        if not every_stock:
            return None
        values = {doc["_id"]: _number_at(doc, field) for doc in self._runs.find(mongo_filter, {field: 1})}
        stock_ids = [run_id for run_id in every_stock if run_id in values]  # those the filter matches
        if not stock_ids:
            return None
        for run_id, rolls in self._stock_values(stock_ids, [metric]).items():
            values[run_id] = rolls.get(metric, {}).get(rollup)
        known = sorted(((value, run_id) for run_id, value in values.items() if value is not None),
                       key=lambda pair: (pair[0], pair[1]), reverse=direction < 0)
        ordered = [run_id for _, run_id in known] + sorted((run_id for run_id, value in values.items()
                                                             if value is None), reverse=direction < 0)
        return self._documents(ordered[skip:skip + limit] if limit else ordered[skip:], projection)

    def _documents(self, ids: list[Any], projection: dict[str, int]) -> list[dict[str, Any]]:
        """The run documents of a page, in the order of its ``ids`` (one read; runs deleted meanwhile left out)."""
        found = {doc["_id"]: doc for doc in self._runs.find({"_id": {"$in": ids}}, projection)}
        return [found[run_id] for run_id in ids if run_id in found]


def _number_at(doc: Mapping[str, Any], path: str) -> Any:
    """The number at a dotted path of a document, or None."""
    value = value_at(doc, path)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


_COMPARE = {"$eq": operator.eq, "$ne": operator.ne, "$lt": operator.lt, "$lte": operator.le, "$gt": operator.gt,
            "$gte": operator.ge}
