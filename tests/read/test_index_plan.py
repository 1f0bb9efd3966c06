"""Every query the read side sends for the runs table, a run page and the compare page is served by an index the
writer declares (schema.INDEXES), as MongoDB's planner would pick one: equality fields, then the sort, then one range
field, as a prefix of one index (tests/support/index_plan.py). Runs recorded by the real observer, reads recorded on
mongomock's collections."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dashboard import compare_actions
from sacred_gpu import schema
from sacred_gpu.read import RunStore
from sacred_gpu.read.settings import MetricColumn
from tests.support.board_data import RUNS, record_runs
from tests.support.index_plan import Query, QueryLog, declared_indexes, serving_index, without_fields
from tests.support.long_runs import record_long_run
from tests.support.run_page_data import record_page_runs

INDEXES = declared_indexes()

#: Reads with no index to serve them, allowed one by one: (read, collection, operation) and why that is fine.
ALLOWED_SCANS: dict[tuple[str, str, str], str] = {
    # the board's own settings: a document per setting (columns, layout, sparklines), a handful at most
    ("settings", schema.BOARD_SETTINGS, "find"): "a handful of documents",
    # groups summarise every run the filter matches (one $group in the database, bounded by maxTimeMS): with no
    # filter, reading every run is what was asked
    ("groups", "runs", "aggregate"): "every run is in some group",
    # a computed column (stop or last heartbeat less start): no index orders by it; one aggregation of ids over
    # the runs the filter matches (bounded by maxTimeMS). A known cost of this sort, reported (issue 16)
    ("sorted by duration", "runs", "aggregate"): "computed sort key",
    # a count filtered on a field the person names (a config key, a metric's roll-up) reads every run: no index
    # declared in advance holds such a field (a page with the same filter walks the default order's index instead)
    ("count by config", "runs", "count_documents"): "a named field only",
    ("count by a metric", "runs", "count_documents"): "a named field only",
}
#: Reads no index serves and that are not fine: findings of this check not fixed yet, each to be removed with its fix.
KNOWN_UNSERVED: dict[tuple[str, str, str], str] = {}


@dataclass(frozen=True)
class Read:
    """A read the board makes: ``name``, the call, and the document ``paths`` the person named in it (config keys,
    metric roll-ups): no index declared in advance holds those, so the check is of everything else the query asks
    (the read side's own fields and the order it adds). ``queries``: whether it sends any (a count of all runs is
    read from the collection's metadata)."""

    name: str
    call: Callable[[], Any]
    paths: tuple[str, ...] = ()
    queries: bool = True


def unserved(reads: Iterable[Read], log: QueryLog) -> tuple[list[str], set[tuple]]:
    """Run ``reads``; the queries no index serves (described), and the shapes of all queries sent."""
    failures, shapes = [], set()
    for read in reads:
        read.call()
        queries: list[Query] = log.take()
        assert bool(queries) is read.queries, f"{read.name}: {len(queries)} queries recorded"
        for query in queries:
            shapes.add(query.shape())
            filter, sort = without_fields(query.filter, query.sort, read.paths)
            if serving_index(filter, sort, INDEXES.get(query.collection, [])) is not None:
                continue
            if (read.name, query.collection, query.operation) in ALLOWED_SCANS | KNOWN_UNSERVED:
                continue
            failures.append(f"{read.name}: {query.collection}.{query.operation}({query.filter!r}, "
                            f"sort={list(query.sort)}, projection={query.projection!r})")
    return failures, shapes


# -- the rule itself ---------------------------------------------------------------------------------------------
RUN_INDEXES = [(("start_time", -1), ("_id", -1)), (("status", 1), ("start_time", -1), ("_id", -1))]


@pytest.mark.parametrize("filter, sort, served", [
    ({}, [("start_time", -1), ("_id", -1)], True),  # the index's order
    ({}, [("start_time", 1), ("_id", 1)], True),  # all reversed
    ({}, [("start_time", -1), ("_id", 1)], False),  # one reversed: no index order
    ({}, [("_id", 1)], True),  # the implicit _id index
    ({"status": "COMPLETED"}, [("start_time", -1), ("_id", -1)], True),  # equality, then the sort
    ({"status": "COMPLETED"}, [("_id", 1)], False),  # the sort does not follow the equality field
    ({"start_time": {"$lt": 5}}, [("start_time", -1), ("_id", -1)], True),  # a range on the sort's key
    ({"status": {"$ne": "X"}}, [("start_time", -1), ("_id", -1)], False),  # a range before the sort
    ({"status": {"$in": ["A", "B"]}}, [], True),  # $in without a sort: equality
    ({"status": {"$in": ["A", "B"]}}, [("start_time", -1), ("_id", -1)], False),  # $in, then a sort: a range
    ({"config.lr": 0.1}, [], False),  # a field no index has
    ({"config.lr": 0.1}, [("start_time", -1), ("_id", -1)], False),  # ... the sort served, not the field
    ({"start_time": {"$gt": 1}, "status": {"$gt": "A"}}, [], False),  # two ranges
    ({"$and": [{"status": "RUNNING"}, {"$nor": [{"heartbeat": None}]}]}, [("start_time", -1), ("_id", -1)], True),
    ({"_id": 3}, [], True),
    ({"_id": {"$in": [1, 2]}}, [], True),
    ({}, [], False),  # a full read: allowed only one by one
    ({"$or": [{"status": "A"}, {"_id": 1}]}, [], False),  # clauses alone bound nothing
])
def test_the_rule_picks_an_index_as_the_planner_would(filter: dict, sort: list, served: bool) -> None:
    assert (serving_index(filter, sort, RUN_INDEXES) is not None) is served


def test_the_rule_wants_equality_fields_first_in_any_order() -> None:
    indexes = [(("run_id", 1), ("origin", 1), ("name", 1))]
    assert serving_index({"name": "a", "run_id": 1, "origin": None}, [], indexes) == indexes[0]
    assert serving_index({"name": "a", "origin": None}, [], indexes) is None  # run_id left out: no prefix
    assert serving_index({"run_id": 1, "name": {"$gt": "a"}}, [], indexes) is None  # origin skipped
    assert serving_index({"run_id": 1, "origin": None, "name": {"$gt": "a"}}, [], indexes) == indexes[0]


def test_named_paths_are_left_out_of_the_check_and_nothing_else() -> None:
    filter = {"$and": [{"status": "COMPLETED"}, {"config.lr": {"$lt": 0.1}}]}
    assert without_fields(filter, [("config.lr", 1), ("_id", 1)], ["config.lr"]) == \
        ({"status": "COMPLETED"}, (("_id", 1),))


# -- the board's reads -----------------------------------------------------------------------------------------
def test_runs_table_queries_are_served(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    store: RunStore = record_runs(client, RUNS)
    store.save_metric_columns([MetricColumn("loss", "last")])
    store.save_sparklines(["loss"])
    rollup = f"{schema.METRIC_ROLLUPS_FIELD}.{schema.rollup_key('loss')}"
    table = [
        Read("settings", store.board_settings),
        Read("config keys", store.config_keys),
        Read("metric names", store.metric_names),
        Read("default page", lambda: store.runs(limit=50, metrics={"loss": ["min", "last"], "acc": "max"})),
        Read("second page", lambda: store.runs(limit=2, skip=2)),
        Read("count", store.count, queries=False),
        Read("sorted by start", lambda: store.runs(sort="start", limit=50)),
        Read("sorted by id", lambda: store.runs(sort="-id", limit=50)),
        Read("sorted by config", lambda: store.runs(sort="config.lr", limit=2, skip=1), ("config.lr",)),
        Read("sorted by config, descending", lambda: store.runs(sort="-config.lr", limit=50), ("config.lr",)),
        Read("sorted by a roll-up", lambda: store.runs(sort="loss.min", limit=50, metrics={"loss": "min"}),
             (f"{rollup}.min",)),
        Read("sorted by duration", lambda: store.runs(sort="duration", limit=50)),
        Read("by status", lambda: store.runs("status == COMPLETED", limit=50)),
        Read("count by status", lambda: store.count("status == FAILED")),
        Read("running", lambda: store.runs("status == RUNNING", limit=50)),
        Read("probably dead", lambda: store.count("status == PROBABLY_DEAD")),
        Read("by experiment", lambda: store.runs("experiment == mnist", limit=50)),
        Read("by config", lambda: store.runs("config.lr < 0.05", limit=50), ("config.lr",)),
        Read("count by config", lambda: store.count("config.lr < 0.05"), ("config.lr",)),
        Read("by a metric", lambda: store.runs("loss.min < 0.3", limit=50), (f"{rollup}.min",)),
        Read("count by a metric", lambda: store.count("loss.min < 0.3"), (f"{rollup}.min",)),
        Read("status and config", lambda: store.runs("status == COMPLETED and config.lr < 0.05", limit=50),
             ("config.lr",)),
        Read("groups", lambda: store.groups("config.lr", "loss.min")),
        Read("groups, filtered", lambda: store.groups("experiment", "loss.min", "status == COMPLETED")),
        Read("sparklines", lambda: store.sparklines([1, 2, 3], ["loss", "acc"])),
        Read("running runs, for /metrics", store.live_runs),
    ]
    log = QueryLog()
    with log.recording(monkeypatch):
        failures, shapes = unserved(table, log)
    assert not failures, "\n".join(failures)
    assert len(shapes) >= 20


def test_run_page_and_compare_queries_are_served(client: Any, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    record_long_run(client, monkeypatch)  # run 1: a series past the cap (chunks), samples of two GPUs
    store = record_page_runs(client, tmp_path)  # runs 2-4: artifacts, sources, output
    context = store.run_plots(1).context
    start = dt.datetime.fromisoformat(context["start"])
    stop = dt.datetime.fromisoformat(context["stop"])
    middle = start + (stop - start) / 2
    source = next(iter(store.run_page(2).sources))
    page = [
        Read("run page", lambda: store.run_page(1)),
        Read("run page with artifacts", lambda: store.run_page(2)),
        Read("run plots", lambda: store.run_plots(1)),
        Read("metric overview by step", lambda: store.metric_points(context, "loss")),
        Read("metric overview by time", lambda: store.metric_points(context, "loss", False)),
        Read("metric zoomed by step", lambda: store.metric_points(context, "loss", True, 20_000, 26_000)),
        Read("metric zoomed by time", lambda: store.metric_points(context, "loss", False, start, middle)),
        Read("metric range, open", lambda: store.metric_range(1, "loss", 29_000)),
        Read("whole series", lambda: store.metrics(1, "acc")),
        Read("system series", lambda: store.metric_overview(1, system=True)),
        Read("system points", lambda: store.system_points(context)),
        Read("system points in range", lambda: store.system_points(context, (start, middle))),
        Read("samples bucketed", lambda: store.system(1, max_points=5)),
        Read("captured output", lambda: store.captured_out(2)),
        Read("artifact listing", lambda: store.artifact_files(2)),
        Read("artifact content", lambda: store.artifact(2, "weights.bin")),
        Read("source", lambda: store.source(2, source)),
    ]
    compared: dict[str, Any] = {}

    def read_compared() -> None:
        compared["runs"] = compare_actions.read_compared(store, [1, 2, 3]).runs

    compare = [
        Read("compare: runs and contexts", read_compared),
        Read("compare: metric panels", lambda: compare_actions.metric_figures(
            store, compared["runs"], {run_id: str(run_id) for run_id in compared["runs"]}, "step", 0.0)),
        Read("compare: GPU overlays", lambda: compare_actions.gpu_overlays(store, compared["runs"])),
    ]
    log = QueryLog()
    with log.recording(monkeypatch):
        failures, shapes = unserved([*page, *compare], log)
    assert not failures, "\n".join(failures)
    assert {collection for collection, *_ in shapes} >= {"runs", "metrics", "metric_chunks", "system_samples",
                                                         "fs.files", "fs.chunks"}
