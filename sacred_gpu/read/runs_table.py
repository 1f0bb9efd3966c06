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
from sacred_gpu.read.query import FIELDS, PREFIXES, compile_filter
from sacred_gpu.read.query import ROLLUPS as FILTER_ROLLUPS
from sacred_gpu.read.read_bounds import BoundedReads
from sacred_gpu.read.rollup_reads import RollupReads, _rollup_fields, is_stock_run
from sacred_gpu.read.table_checks import TableChecks, merged_projection, value_at
from sacred_gpu.read.table_extras import TableExtras

#: Columns of the table that are no field of the query language, and what sorting by them sorts by (``duration``:
#: computed in the database, stop or last heartbeat less start).
SHOWN_COLUMNS = {"duration": "duration", "gpu": "system.gpu_model", "gpu_mem_peak_mib": "system.gpu_mem_peak_mib",
                 "gpu_util_mean_pct": "system.gpu_util_mean_pct", "gpu_energy_wh": "system.gpu_energy_wh"}
#: Sort keys computed in the database: the duration (stop, or last heartbeat, less start), and the result by value
#: (a numpy scalar Sacred stored as ``{"py/object": ..., "value": 0.8}`` sorts as 0.8).
_COMPUTED = {"duration": {"$subtract": [{"$ifNull": ["$stop_time", "$heartbeat"]}, "$start_time"]},
             "result": {"$ifNull": ["$result.value", "$result"]}}
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
        out[prefix] = schema.decoded(value)  # numpy scalars and arrays Sacred's flatten stored: numbers and lists


def _sorted_metric(sort: str | None, field: str) -> tuple[str, str] | None:
    """(metric, roll-up) where the table is sorted by a metric's roll-up (stored at ``field``), else None."""
    if not sort or not field.startswith(f"{schema.METRIC_ROLLUPS_FIELD}."):
        return None
    metric, _, rollup = sort.lstrip("-+").rpartition(".")
    return metric, rollup


class RunsTable(BoundedReads, RollupReads, TableChecks, TableExtras):
    """The runs-table reads of :class:`~sacred_gpu.read.store.RunStore`, which sets the collections (every read
    of them bounded by ``max_time_ms``: :class:`BoundedReads`); groups and sparklines: :class:`TableExtras`."""

    dead_after: float

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
        columns = list(columns or [])
        key = self._sort_key(sort)
        projection = merged_projection([*_TABLE_PROJECTION, *columns, *([key[0]] if key[0] not in _COMPUTED else []),
                                        *(f"{schema.METRIC_ROLLUPS_FIELD}.{field}" for name, _ in wanted
                                          for field in _rollup_fields(name))])
        by_metric = _sorted_metric(sort, key[0])
        docs = self._page(mongo_filter, key, skip, limit, projection, by_metric)
        stock = self._stock_rollups([d["_id"] for d in docs if is_stock_run(d)], wanted)
        names = self._legacy_metric_names(docs, wanted)
        rows = [self._row(doc, now, wanted, stock.get(doc["_id"], {}), columns, names.get(doc["_id"], ()))
                for doc in docs]
        if not rows:
            self._explain_nothing(query)
            return pd.DataFrame(columns=self._empty_columns(now, wanted, columns)).rename_axis("id")
        frame = pd.DataFrame(rows).set_index("id")
        self._check_columns(frame, wanted, None if key[0] == "_id" or key[0] in _COMPUTED else key[0], docs,
                            by_metric[0] if by_metric else None)
        return frame

    def _empty_columns(self, now: dt.datetime, wanted: list[tuple[str, str]], columns: list[str]) -> list[str]:
        """The columns of a page with no row: those a page with rows has (a row's own columns, as :meth:`_row` makes
        them, and config keys as recent runs have them)."""
        shown = [name for name in self._row({"_id": None}, now, [], {}, []) if name != "id"]
        return list(dict.fromkeys([*shown, *self.config_keys(), *(f"{name}.{rollup}" for name, rollup in wanted),
                                   *columns]))

    def _page(self, mongo_filter: dict, sort: tuple[str, int], skip: int, limit: int | None,
              projection: dict[str, int], by_metric: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        """Run documents ``skip`` .. ``skip + limit`` in ``sort`` order. Descending, runs without a value come last
        as MongoDB orders them; ascending too (MongoDB would put them first, before the lowest value): the runs
        with a value, then the others by id, so that sorting by a loss shows the best runs first."""
        key, direction = sort
        if by_metric is not None:
            page = self._by_metric(mongo_filter, key, *by_metric, direction, skip, limit, projection)
            if page is not None:
                return page
        if key in _COMPUTED:
            return self._by_expression(_COMPUTED[key], mongo_filter, direction, skip, limit, projection)
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
        return self._documents(ids, projection)

    def _by_expression(self, expression: dict, mongo_filter: dict, direction: int, skip: int, limit: int | None,
                       projection: dict[str, int]) -> list[dict[str, Any]]:
        """A page sorted by a value computed in the database (:data:`_COMPUTED`), runs without one last either way,
        ties by id."""
        pipeline = [{"$match": mongo_filter}, {"$project": {"value": expression}},
                    {"$addFields": {"known": {"$cond": [{"$eq": [{"$ifNull": ["$value", None]}, None]}, 0, 1]}}},
                    {"$sort": {"known": -1, "value": direction, "_id": direction}}, {"$skip": skip}]
        ids = [doc["_id"] for doc in self._runs.aggregate(pipeline + ([{"$limit": limit}] if limit else []))]
        return self._documents(ids, projection)

    def count(self, filter: str | dict | None = None) -> int:
        """How many runs match ``filter``; all runs from the collection's metadata (counting documents with an
        empty filter reads every one of them)."""
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        mongo_filter = self._with_metric_conditions(compile_filter(filter, now=now, dead_after=self.dead_after))
        if not mongo_filter:
            return self._runs.estimated_document_count()
        return self._runs.count_documents(mongo_filter)

    def _sort_key(self, sort: str | None) -> tuple[str, int]:
        if not sort:
            return "start_time", -1
        direction = -1 if sort.startswith("-") else 1
        name = sort.lstrip("-+")
        if name in FIELDS:
            return FIELDS[name], direction
        if name in SHOWN_COLUMNS:  # a column of the table: sorted by what it shows
            return SHOWN_COLUMNS[name], direction
        metric, _, rollup = name.rpartition(".")
        if rollup in schema.ROLLUPS and metric and metric.split(".")[0] not in PREFIXES:
            # runs recorded before roll-up keys were unambiguous, with ``%``, ``.`` or a leading ``$`` in this
            # metric's name, sort as runs without a value (filters and the table's cells do read their old keys)
            return f"{schema.METRIC_ROLLUPS_FIELD}.{schema.rollup_key(metric)}.{rollup}", direction
        if "$" in name:
            raise BadQuery(f"invalid sort column {name!r}")
        return name, direction

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
            "result": schema.decoded(schema.label_stubs(doc.get("result"))),
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
            row[path] = schema.decoded(schema.label_stubs(value_at(doc, path)))
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

    def query_names(self, config_keys: Iterable[str] | None = None,
                    metric_names: Iterable[str] | None = None) -> list[str]:
        """The names a filter can use, for completion: the language's fields, config keys and metric roll-ups of
        the newest runs (``config_keys`` and ``metric_names`` where the caller read them already)."""
        config = list(self.config_keys() if config_keys is None else config_keys)
        metrics = list(self.metric_names() if metric_names is None else metric_names)
        return [*FIELDS, *config, *(f"{name}.{rollup}" for name in metrics for rollup in FILTER_ROLLUPS)]
