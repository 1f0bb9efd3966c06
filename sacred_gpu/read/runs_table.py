"""The runs table: a page of runs as a DataFrame (filter, sort, paging, roll-up and custom columns), counts, and what
the table can show. Roll-ups are read from the run documents where our observer stored them and aggregated in the
database for runs of Sacred's own observer."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from sacred_gpu import schema
from sacred_gpu.read.errors import BadQuery
from sacred_gpu.read.query import FIELDS, PREFIXES, MetricCondition, Query, compile_filter

_TABLE_PROJECTION = ["format", "experiment.name", "status", "start_time", "stop_time", "heartbeat", "host.hostname",
                     "result", "omniboard", "meta.comment", "config", schema.SYSTEM_FIELD]


def _rollup_request(metrics: Mapping[str, str | Iterable[str]] | None) -> list[tuple[str, str]]:
    pairs = []
    for name, wanted in (metrics or {}).items():
        for rollup in [wanted] if isinstance(wanted, str) else list(wanted):
            if rollup not in schema.ROLLUPS:
                raise BadQuery(f"unknown roll-up {rollup!r} for metric {name!r}; "
                               f"choose from {', '.join(schema.ROLLUPS)}")
            pairs.append((name, rollup))
    return pairs


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if schema.is_stub(value):  # a value moved to GridFS: one cell saying so, not the stub's fields
        out[prefix] = schema.stub_label(value)
    elif isinstance(value, dict) and value and not any(key.startswith("py/") for key in value):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    else:
        out[prefix] = value


def _rollup_fields(name: str) -> list[str]:
    """Fields of ``metric_rollups`` that may hold metric ``name``'s roll-ups: its :func:`schema.rollup_key`, and the
    older :func:`schema.bson_key` form where that differs (runs recorded before roll-up keys were unambiguous)."""
    legacy = schema.legacy_rollup_key(name)
    return [schema.rollup_key(name)] + ([legacy] if legacy is not None else [])


#: Runs whose roll-ups must be aggregated from their series: written by Sacred's own observer (ours store them).
_STOCK_RUNS = {"format": {"$nin": list(schema.FORMATS)}, schema.METRIC_ROLLUPS_FIELD: {"$exists": False},
               "status": {"$ne": schema.QUEUED}}


def _stock(doc: Mapping[str, Any]) -> bool:
    """Whether ``doc`` (a run document) is one of :data:`_STOCK_RUNS`."""
    return (doc.get("format") not in schema.FORMATS and schema.METRIC_ROLLUPS_FIELD not in doc
            and doc.get("status") != schema.QUEUED)




class RunsTable:
    """The runs-table reads of :class:`~sacred_gpu.read.store.RunStore`, which sets the collections."""

    dead_after: float
    _runs: Any
    _metrics: Any

    # -- the runs table -------------------------------------------------------------------------------------------
    def runs(self, filter: str | dict | None = None, sort: str | None = None, limit: int | None = None,
             metrics: Mapping[str, str | Iterable[str]] | None = None, columns: Iterable[str] | None = None,
             skip: int = 0, ids: Iterable[Any] | None = None) -> pd.DataFrame:
        """Runs as a DataFrame indexed by run id.

        ``filter``: the query language (``status == COMPLETED and config.lr < 0.01 and val_loss.min < 0.3``) or a
        MongoDB filter limited to safe operators. ``sort``: a column (``start``, ``config.lr``, ``val_loss.min``),
        ``-`` first for descending; default newest first; runs without a value last either way. ``metrics``:
        ``{"val_loss": "min", "acc": ["last", "max_step"]}``, shown as columns ``val_loss.min`` ...; ``columns``:
        extra dotted paths to show; ``ids``: only these runs.
        """
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        query = compile_filter(filter, now=now, dead_after=self.dead_after)
        mongo_filter = self._with_metric_conditions(query)
        if ids is not None:
            chosen = {"_id": {"$in": list(ids)}}
            mongo_filter = {"$and": [mongo_filter, chosen]} if mongo_filter else chosen
        wanted = _rollup_request(metrics)
        projection = dict.fromkeys(_TABLE_PROJECTION, 1)
        projection.update({f"{schema.METRIC_ROLLUPS_FIELD}.{field}": 1 for name, _ in wanted
                           for field in _rollup_fields(name)})
        projection.update(dict.fromkeys(columns or [], 1))
        docs = self._page(mongo_filter, self._sort_key(sort), skip, limit, projection)
        stock = self._stock_rollups([d["_id"] for d in docs if _stock(d)], wanted)
        names = self._legacy_metric_names(docs, wanted)
        rows = [self._row(doc, now, wanted, stock.get(doc["_id"], {}), columns or [], names.get(doc["_id"], ()))
                for doc in docs]
        frame = pd.DataFrame(rows)
        if frame.empty:
            return pd.DataFrame(columns=["experiment", "status"]).rename_axis("id")
        return frame.set_index("id")

    def _page(self, mongo_filter: dict, sort: tuple[str, int], skip: int, limit: int | None,
              projection: dict[str, int]) -> list[dict[str, Any]]:
        """Run documents ``skip`` .. ``skip + limit`` in ``sort`` order. Descending, runs without a value come last
        as MongoDB orders them; ascending too (MongoDB would put them first, before the lowest value): the runs
        with a value, then the others by id, so that sorting by a loss shows the best runs first."""
        key, direction = sort
        if direction < 0 or key == "_id":
            return self._sorted(mongo_filter, sort, skip, limit, projection)
        valued = {"$and": [mongo_filter, {key: {"$ne": None}}]} if mongo_filter else {key: {"$ne": None}}
        blank = {"$and": [mongo_filter, {key: None}]} if mongo_filter else {key: None}
        docs = self._sorted(valued, sort, skip, limit, projection)
        if limit and len(docs) == limit:
            return docs
        # past the runs with a value: where the others start (counted only when the page starts past them)
        after = 0 if docs else max(0, skip - self._runs.count_documents(valued))
        rest = None if not limit else limit - len(docs)
        return docs + self._sorted(blank, ("_id", 1), after, rest, projection)

    def _sorted(self, mongo_filter: dict, sort: tuple[str, int], skip: int, limit: int | None,
                projection: dict[str, int]) -> list[dict[str, Any]]:
        """The page's ids first (sorting only ids and the sort key), then the page's documents by id, so no
        document outside the page is read whole."""
        key, direction = sort
        order = [(key, direction)] + ([("_id", direction)] if key != "_id" else [])  # ids break ties
        if not limit:
            return list(self._runs.find(mongo_filter, projection).sort(order).skip(skip))
        ids = [doc["_id"] for doc in self._runs.find(mongo_filter, {"_id": 1}).sort(order).skip(skip).limit(limit)]
        found = {doc["_id"]: doc for doc in self._runs.find({"_id": {"$in": ids}}, projection)}
        return [found[run_id] for run_id in ids if run_id in found]

    def count(self, filter: str | dict | None = None) -> int:
        """How many runs match ``filter``."""
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        return self._runs.count_documents(self._with_metric_conditions(compile_filter(filter, now=now,
                                                                                      dead_after=self.dead_after)))

    def _sort_key(self, sort: str | None) -> tuple[str, int]:
        if not sort:
            return "start_time", -1
        direction = -1 if sort.startswith("-") else 1
        name = sort.lstrip("-+")
        if name in FIELDS:
            return FIELDS[name], direction
        metric, _, rollup = name.rpartition(".")
        if rollup in schema.ROLLUPS and metric and metric.split(".")[0] not in PREFIXES:
            # runs recorded before roll-up keys were unambiguous, with ``%``, ``.`` or a leading ``$`` in this
            # metric's name, sort as runs without a value (filters and the table's cells do read their old keys)
            return f"{schema.METRIC_ROLLUPS_FIELD}.{schema.rollup_key(metric)}.{rollup}", direction
        if "$" in name:
            raise BadQuery(f"invalid sort column {name!r}")
        return name, direction

    def _with_metric_conditions(self, query: Query) -> dict:
        """The runs filter, with each metric condition on the stored roll-up or, for runs written by Sacred's own
        observer, on a roll-up aggregated in the database."""
        parts = [query.runs] if query.runs else []
        stock_ids = self._runs.distinct("_id", _STOCK_RUNS) if query.metrics else []
        for condition in query.metrics:
            stored = self._stored_condition(condition)
            parts.append({"$or": [stored, {"_id": {"$in": self._stock_matches(condition, stock_ids)}}]}
                         if stock_ids else stored)
        return {"$and": parts} if len(parts) > 1 else (parts[0] if parts else {})

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

    def _stock_matches(self, condition: MetricCondition, run_ids: list[Any]) -> list[Any]:
        if condition.rollup.endswith("_step"):
            return []
        expression = {"min": {"$min": "$values"}, "max": {"$max": "$values"}, "mean": {"$avg": "$values"},
                      "first": {"$arrayElemAt": ["$values", 0]}, "last": {"$arrayElemAt": ["$values", -1]}}
        pipeline = [{"$match": {"run_id": {"$in": run_ids}, "name": condition.name}},
                    {"$project": {"run_id": 1, "value": expression[condition.rollup]}},
                    {"$match": {"value": {condition.op: condition.value}}}]
        return [doc["run_id"] for doc in self._metrics.aggregate(pipeline)]

    def _stock_rollups(self, run_ids: list[Any], wanted: list[tuple[str, str]]) -> dict[Any, dict[str, dict]]:
        """Roll-ups of runs that have none stored (written by Sacred's observer), aggregated in the database."""
        if not run_ids or not wanted:
            return {}
        names = sorted({name for name, _ in wanted})
        pipeline = [{"$match": {"run_id": {"$in": run_ids}, "name": {"$in": names}}},
                    {"$project": {"run_id": 1, "name": 1, "min": {"$min": "$values"}, "max": {"$max": "$values"},
                                  "mean": {"$avg": "$values"}, "first": {"$arrayElemAt": ["$values", 0]},
                                  "last": {"$arrayElemAt": ["$values", -1]}}}]
        found: dict[Any, dict[str, dict]] = {}
        for doc in self._metrics.aggregate(pipeline):
            found.setdefault(doc["run_id"], {})[doc["name"]] = doc
        if any(rollup.endswith("_step") for _, rollup in wanted):  # which step held the extreme: read those series
            for doc in self._metrics.find({"run_id": {"$in": run_ids}, "name": {"$in": names}},
                                          {"run_id": 1, "name": 1, "steps": 1, "values": 1}):
                values, steps = doc.get("values") or [], doc.get("steps") or []
                if values:
                    roll = found[doc["run_id"]][doc["name"]]
                    roll["min_step"] = steps[values.index(min(values))]
                    roll["max_step"] = steps[values.index(max(values))]
        return found

    def _status(self, doc: dict, now: dt.datetime) -> str:
        return schema.PROBABLY_DEAD if schema.is_probably_dead(doc, now, self.dead_after) else doc.get("status")

    def _row(self, doc: dict, now: dt.datetime, wanted: list[tuple[str, str]], stock: dict[str, dict],
             columns: Iterable[str], names: Iterable[str] = ()) -> dict[str, Any]:
        start, end = doc.get("start_time"), doc.get("stop_time") or doc.get("heartbeat")
        omniboard = doc.get("omniboard") or {}
        system = doc.get(schema.SYSTEM_FIELD) or {}
        row: dict[str, Any] = {
            "id": doc["_id"],
            "experiment": (doc.get("experiment") or {}).get("name"),
            "status": self._status(doc, now),
            "start": start,
            "duration": (end - start).total_seconds() if start and end else None,
            "host": (doc.get("host") or {}).get("hostname"),
            "gpu": f"{system['gpu_count']}x {system['gpu_model']}" if system.get("gpu_model") else None,
            "gpu_mem_peak_mib": system.get("gpu_mem_peak_mib"),
            "gpu_util_mean_pct": system.get("gpu_util_mean_pct"),
            "gpu_energy_wh": system.get("gpu_energy_wh"),
            "tags": list(omniboard.get("tags") or []),
            "notes": omniboard.get("notes") if omniboard.get("notes") is not None else
            (doc.get("meta") or {}).get("comment"),
            "result": schema.label_stubs(doc.get("result")),
        }
        config: dict[str, Any] = {}
        _flatten("config", doc.get("config") or {}, config)
        row.update(config)
        stored = doc.get(schema.METRIC_ROLLUPS_FIELD)
        names = set(names)
        for name, rollup in wanted:
            source = schema.find_rollup(stored, name, names) if stored is not None else stock.get(name)
            row[f"{name}.{rollup}"] = (source or {}).get(rollup)
        for path in columns:
            value: Any = doc
            for part in path.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            row[path] = schema.label_stubs(value)
        return row

    # -- what the table can show ---------------------------------------------------------------------------------
    def metric_names(self, sample: int = 500) -> list[str]:
        """Names of the user metric series of the ``sample`` newest runs (from their ``info.metrics``), sorted."""
        names: set[str] = set()
        for doc in self._page({}, ("start_time", -1), 0, sample, {"info.metrics": 1, "format": 1}):
            names.update(schema.series_names(doc)[0])
        return sorted(names)

    def config_keys(self, sample: int = 200) -> list[str]:
        """Flattened ``config.*`` keys of the ``sample`` newest runs, in first-seen order."""
        keys: dict[str, None] = {}
        for doc in self._page({}, ("start_time", -1), 0, sample, {"config": 1}):
            flat: dict[str, Any] = {}
            _flatten("config", doc.get("config") or {}, flat)
            keys.update(dict.fromkeys(flat))
        return list(keys)

