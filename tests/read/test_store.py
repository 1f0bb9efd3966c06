"""RunStore reads databases written by both observers: runs table, roll-ups, filters, series, samples, files, edits."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import gridfs
import mongomock
import pandas as pd
import pytest
from pymongo.errors import ExecutionTimeout
from sacred.observers import MongoObserver

import sacred_gpu
from sacred_gpu import GpuMongoObserver, schema
from sacred_gpu.read import BadQuery
from sacred_gpu.read.query import QueryError
from sacred_gpu.read.read_bounds import TooSlow
from sacred_gpu.testing.fake_nvml import FakeNvml, two_gpus
from tests.support.experiments import run_experiment
from tests.support.recording import until_sampled

LOSSES = {0.1: [0.9, 0.5, 0.7, 0.2], 0.01: [0.8, 0.6, 0.4, 0.3], 0.001: [0.95, 0.9, 0.85, 0.99]}


def trainer(tmp_path):
    def main(_run, lr):
        for step, loss in enumerate(LOSSES[lr]):
            _run.log_scalar("val_loss", loss, step * 10)
            _run.log_scalar("train.acc", 1 - loss, step * 10)
        (tmp_path / "model.txt").write_text(f"lr={lr}")
        _run.add_artifact(str(tmp_path / "model.txt"))
        until_sampled(_run)  # a few system samples
        return 1 - min(LOSSES[lr])

    return main


@pytest.fixture
def store(client, tmp_path):
    """Runs 1-3 by our observer (with simulated GPUs), 4 by Sacred's stock observer, 5 a run that died."""
    for lr in (0.1, 0.01):
        run_experiment(trainer(tmp_path), GpuMongoObserver(client=client, nvml=FakeNvml(two_gpus()),
                                                           sample_interval=0.05, slow_sample_interval=0.1),
                       config={"lr": lr, "optim": {"name": "adam"}})
    run_experiment(trainer(tmp_path), GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False),
                   config={"lr": 0.001, "optim": {"name": "sgd"}})
    db = client["sacred"]
    stock = MongoObserver.create_from(db.runs, gridfs.GridFS(db), metrics_collection=db.metrics)
    run_experiment(trainer(tmp_path), stock, config={"lr": 0.01, "optim": {"name": "sgd"}})  # "max + 1": id 4
    long_ago = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(hours=1)
    db.runs.insert_one({"_id": 5, "status": "RUNNING", "start_time": long_ago, "heartbeat": long_ago,
                        "experiment": {"name": "killed"}, "config": {"lr": 0.5}})
    db.runs.update_one({"_id": 2}, {"$set": {"omniboard.tags": ["baseline"], "omniboard.notes": "good"}})
    return sacred_gpu.connect(client=client)


def test_runs_table(store):
    table = store.runs(metrics={"val_loss": ["min", "min_step", "last"], "train.acc": "max"})
    assert list(table.index) == [4, 3, 2, 1, 5]  # newest first (5 started an hour ago)
    assert table.loc[5, "status"] == "PROBABLY_DEAD" and table.loc[1, "status"] == "COMPLETED"
    assert table.loc[2, "tags"] == ["baseline"] and table.loc[2, "notes"] == "good"
    assert table.loc[1, "config.lr"] == 0.1 and table.loc[3, "config.optim.name"] == "sgd"
    assert table.loc[1, "duration"] > 0 and table.loc[1, "experiment"] == "test_experiment"
    assert table.loc[1, "gpu"] == "2x NVIDIA H100 80GB HBM3" and table.loc[1, "gpu_util_mean_pct"] == 0
    assert pd.isna(table.loc[4, "gpu"])  # the stock observer records no GPUs
    for run_id, lr in ((1, 0.1), (2, 0.01), (3, 0.001), (4, 0.01)):  # stored roll-ups and aggregated ones agree
        losses = LOSSES[lr]
        assert table.loc[run_id, "val_loss.min"] == min(losses)
        assert table.loc[run_id, "val_loss.min_step"] == 10 * losses.index(min(losses))
        assert table.loc[run_id, "val_loss.last"] == losses[-1]
        assert table.loc[run_id, "train.acc.max"] == pytest.approx(1 - min(losses))


def test_filters_in_both_forms(store):
    assert list(store.runs("status == COMPLETED and config.lr < 0.05").index) == [4, 3, 2]
    assert list(store.runs('tags contains "baseline"').index) == [2]
    assert list(store.runs("val_loss.min < 0.35").index) == [4, 2, 1]  # stored and aggregated roll-ups
    assert list(store.runs("val_loss.last > 0.5 and config.optim.name == sgd").index) == [3]
    assert list(store.runs("status == PROBABLY_DEAD").index) == [5]
    assert list(store.runs({"config.lr": {"$in": [0.1, 0.5]}}).index) == [1, 5]
    assert store.count("experiment == test_experiment") == 4
    with pytest.raises(QueryError, match=r"\$where"):
        store.runs({"$and": [{"config.lr": 1}, {"$where": "sleep(1000)"}]})
    with pytest.raises(QueryError):
        store.runs("config.lr <")


def test_sort_limit_and_columns(store):
    assert list(store.runs(sort="config.lr", limit=3).index) == [3, 2, 4]  # ties by id
    assert list(store.runs(sort="-val_loss.min", metrics={"val_loss": "min"}, filter="id < 4").index) == [3, 2, 1]
    # ascending, runs without the value come last (MongoDB would put them first), in pages as in one read
    ascending = store.runs(sort="val_loss.min", metrics={"val_loss": "min"})
    # runs 1-3 have stored roll-ups, 4 (Sacred's observer) its roll-up computed by the same rule: sorted together
    # (2 and 4 tie at 0.3: by id); 5 (it died before logging any) comes last
    assert list(ascending.index) == [1, 2, 4, 3, 5]
    assert ascending["val_loss.min"][[1, 2, 4, 3]].is_monotonic_increasing
    paged = [run_id for skip in range(5) for run_id in store.runs(sort="val_loss.min", limit=1, skip=skip).index]
    assert paged == list(ascending.index)
    assert list(store.runs(sort="val_loss.min", limit=2, skip=2).index) == list(ascending.index[2:4])
    page = store.runs(sort="id", limit=2, skip=2, columns=["host.os", "meta.command"])
    assert list(page.index) == [3, 4] and page.loc[3, "meta.command"] == "main"
    with pytest.raises(ValueError):
        store.runs(metrics={"val_loss": "median"})
    assert list(store.runs(ids=[4, 2, 9], sort="id").index) == [2, 4]
    assert list(store.runs("config.lr < 0.05", ids=[1, 2, 3], sort="id").index) == [2, 3]


def test_metric_series_of_both_observers(store):
    ours, stock = store.metrics(1), store.metrics(4, names=["val_loss"])
    loss = ours[ours["name"] == "val_loss"]
    assert loss["step"].tolist() == [0, 10, 20, 30] and loss["value"].tolist() == LOSSES[0.1]
    assert set(ours["name"]) == {"val_loss", "train.acc"}  # the run's own series; the observer's apart
    assert "sys/gpu0/util_pct" in set(store.metrics(1, system=True)["name"])
    assert stock["value"].tolist() == LOSSES[0.01] and set(stock["name"]) == {"val_loss"}
    assert isinstance(ours["timestamp"].iloc[0], (dt.datetime, pd.Timestamp))


def test_long_series_is_read_whole_from_chunks(client, monkeypatch):
    monkeypatch.setattr(schema, "METRIC_CAP", 50)
    monkeypatch.setattr(schema, "CHUNK_POINTS", 20)

    def main(_run):
        for step in range(333):
            _run.log_scalar("loss", float(step), step)
            if step % 100 == 0:
                time.sleep(0.06)  # several heartbeats, several batches

    run = run_experiment(main, GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False))
    series = sacred_gpu.connect(client=client).metrics(run._id)
    assert series["step"].tolist() == list(range(333)) and series["value"].tolist() == [float(s) for s in range(333)]
    assert client["sacred"].metric_chunks.count_documents({}) > 0


def test_system_samples_and_database_side_downsampling(store):
    samples = store.system(1)
    assert isinstance(samples.index, pd.DatetimeIndex) and len(samples) >= 5
    assert "sys/gpu0/mem_used_mib" in samples.columns and "sys/cpu/util_pct" in samples.columns
    assert samples.index.is_monotonic_increasing
    few = store.system(1, max_points=3)
    assert 1 <= len(few) <= 4 and few["sys/gpu1/util_pct"].eq(0).all()
    assert few["sys/proc/rss_mib"].mean() == pytest.approx(samples["sys/proc/rss_mib"].mean(), rel=0.2)
    middle = samples.index[len(samples) // 2]
    assert store.system(1, start=middle).index.min() >= middle
    assert store.system(3).empty  # sampling was off


def test_files_and_documents(store):
    assert store.artifact(2, "model.txt") == b"lr=0.01" and store.artifact(4, "model.txt") == b"lr=0.01"
    doc = store.run(1)
    assert "experiments.py" in dict(doc["experiment"]["sources"])
    assert store.source(1, "experiments.py").startswith(b'"""') and store.source(4, "experiments.py") == store.source(
        1, "experiments.py")
    with pytest.raises(KeyError):
        store.run(99)
    with pytest.raises(KeyError):
        store.artifact(1, "missing.txt")


def test_tags_notes_and_delete(store, client):
    store.set_tags(1, ["ablation", "<script>alert(1)</script>"])
    store.set_notes(1, "needs a rerun")
    assert store.run(1)["omniboard"] == {"tags": ["ablation", "<script>alert(1)</script>"], "notes": "needs a rerun"}
    with pytest.raises(KeyError):
        store.set_tags(99, ["x"])
    db = client["sacred"]
    artifact = store.run(1)["artifacts"][0]["file_id"]
    source = store.run(1)["experiment"]["sources"][0][1]
    assert store.delete([1, 99]) == 1
    assert db.runs.find_one({"_id": 1}) is None and db.metrics.count_documents({"run_id": 1}) == 0
    assert db.system_samples.count_documents({"run_id": 1}) == 0
    assert db.fs.files.find_one({"_id": artifact}) is None
    assert db.fs.files.find_one({"_id": source}) is not None  # still used by the other runs
    assert store.delete([2, 3, 4]) == 3
    assert db.fs.files.find_one({"_id": source}) is None  # no run uses it any more


def test_runs_of_our_observer_never_aggregate_series(client, monkeypatch):
    """Roll-ups of our runs are stored (none for a queued run or one that failed before a heartbeat): reading the
    table or filtering on a metric must not aggregate metric series, which costs a scan of every series."""
    def main(_run):
        _run.log_scalar("loss", 0.5, 0)

    def early_failure(_run):
        raise RuntimeError("before any heartbeat")

    observer = GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False)
    run_experiment(main, observer)
    with pytest.raises(RuntimeError):
        run_experiment(early_failure, GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False),
                       options={"--beat-interval": 60})
    store = sacred_gpu.connect(client=client)
    metrics = client["sacred"]["metrics"]
    monkeypatch.setattr(type(metrics), "aggregate", lambda *a, **k: pytest.fail("aggregated metric series"))
    frame = store.runs(metrics={"loss": "min"})
    assert frame.loc[1, "loss.min"] == 0.5 and pd.isna(frame.loc[2, "loss.min"])
    assert list(store.runs("loss.min < 1").index) == [1] and store.count("loss.min < 1") == 1


def test_a_running_run_without_a_heartbeat_is_probably_dead_in_the_table_and_in_the_filter(client):
    """The table and the filter read one rule: a RUNNING run started 10 minutes ago that never beat is dead in both."""
    started = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(minutes=10)
    client["sacred"].runs.insert_many([{"_id": 1, "status": "RUNNING", "start_time": started, "heartbeat": None},
                                       {"_id": 2, "status": "RUNNING", "start_time": started}])
    store = sacred_gpu.connect(client=client)
    assert list(store.runs().status) == ["PROBABLY_DEAD", "PROBABLY_DEAD"]
    assert sorted(store.runs("status == PROBABLY_DEAD").index) == [1, 2]
    assert store.count("status != PROBABLY_DEAD") == 0


def test_the_status_filter_returns_exactly_the_rows_the_status_column_shows():
    """A live run, one whose heartbeat is 2 h old and one killed before its first beat, read by a client that returns
    naive datetimes and by one that returns aware datetimes (``tz_aware=True``)."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    started = now - dt.timedelta(hours=3)
    docs = [{"_id": 1, "status": "RUNNING", "start_time": started, "heartbeat": now},
            {"_id": 2, "status": "RUNNING", "start_time": started, "heartbeat": now - dt.timedelta(hours=2)},
            {"_id": 3, "status": "RUNNING", "start_time": started, "heartbeat": None},
            {"_id": 4, "status": "COMPLETED", "start_time": started, "heartbeat": now}]
    for tz_aware in (False, True):
        client = mongomock.MongoClient(tz_aware=tz_aware)
        client["sacred"].runs.insert_many([dict(doc) for doc in docs])
        store = sacred_gpu.connect(client=client)
        shown = store.runs().status.to_dict()
        assert shown == {1: "RUNNING", 2: "PROBABLY_DEAD", 3: "PROBABLY_DEAD", 4: "COMPLETED"}
        for status in ("RUNNING", "PROBABLY_DEAD", "COMPLETED", "completed"):
            wanted = sorted(run_id for run_id, value in shown.items() if value == status.upper())
            assert sorted(store.runs(f"status == {status}").index) == wanted, status
        assert sorted(store.runs("status in [RUNNING, PROBABLY_DEAD]").index) == [1, 2, 3]


def test_connect_takes_the_boards_specs_and_a_name_is_one_name(client, monkeypatch):
    """``connect()`` takes what ``sacred-board -m`` takes; ``metrics(run, names="loss")`` is the loss series."""
    opened = []
    import sacred_gpu.read.store as store_module

    real = store_module.connection.open_client
    monkeypatch.setattr(store_module.connection, "open_client",
                        lambda url=None, client_=None, **kw: opened.append(url) or real(client=client))
    store = sacred_gpu.connect("db.lab:27017:vision")
    assert opened == ["db.lab:27017"] and store.database.name == "vision"
    assert repr(store) == "RunStore(db.lab:27017 (database 'vision'), runs collection 'runs')"
    assert sacred_gpu.connect("mongodb://db.lab/other").database.name == "other"
    assert sacred_gpu.connect("db.lab:27017", db_name="mine").database.name == "mine"
    client["vision"].metrics.insert_one({"run_id": 1, "name": "loss", "steps": [0, 1], "values": [1.0, 0.5],
                                         "timestamps": [dt.datetime(2026, 1, 1)] * 2})
    assert list(store.metrics(1, names="loss")["value"]) == [1.0, 0.5]


class _RecordingCursor:
    """A cursor that notes the time limit set on it (``calls`` entry ``["find", ms]``)."""

    def __init__(self, cursor: Any, calls: list, fail: bool = False) -> None:
        self.cursor, self.fail = cursor, fail
        calls.append(["find", None])
        self.entry = calls[-1]

    def max_time_ms(self, ms: int) -> _RecordingCursor:
        self.entry[1] = ms
        return self

    def sort(self, *args: Any) -> _RecordingCursor:
        self.cursor = self.cursor.sort(*args)
        return self

    def skip(self, count: int) -> _RecordingCursor:
        self.cursor = self.cursor.skip(count)
        return self

    def limit(self, count: int) -> _RecordingCursor:
        self.cursor = self.cursor.limit(count)
        return self

    def __iter__(self) -> Any:
        if self.fail:
            raise ExecutionTimeout("operation exceeded time limit", 50)
        return iter(self.cursor)


class _Recording:
    """A collection that notes the time limit of each read it is asked for (mongomock ignores ``maxTimeMS``)."""

    def __init__(self, collection: Any, calls: list, fail: bool = False) -> None:
        self.collection, self.calls, self.fail = collection, calls, fail

    def __getattr__(self, name: str) -> Any:
        return getattr(self.collection, name)

    def find(self, *args: Any, **kwargs: Any) -> _RecordingCursor:
        return _RecordingCursor(self.collection.find(*args, **kwargs), self.calls, self.fail)

    def find_one(self, filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(["find_one", kwargs.get("max_time_ms")])
        if self.fail:
            raise ExecutionTimeout("operation exceeded time limit", 50)
        return self.collection.find_one(filter, *args)

    def count_documents(self, filter: Any, **kwargs: Any) -> int:
        self.calls.append(["count_documents", kwargs.get("maxTimeMS")])
        return self.collection.count_documents(filter)

    def aggregate(self, pipeline: list, **kwargs: Any) -> Any:
        self.calls.append(["aggregate", kwargs.get("maxTimeMS")])
        return self.collection.aggregate(pipeline)

    def distinct(self, key: str, filter: Any = None, **kwargs: Any) -> list:
        self.calls.append(["distinct", kwargs.get("maxTimeMS")])
        return self.collection.distinct(key, filter)


def test_every_read_of_the_table_carries_the_time_limit(store):
    """Issue 15, item 11: finds, counts and aggregations are bounded on the server (maxTimeMS). Issue 16: a metric
    filter or sort sends no ``distinct`` over every run (Sacred's runs are found through the ``format`` index)."""
    calls: list = []
    store.max_time_ms = 1234
    store._runs = _Recording(store.database[store.collections.runs], calls)
    store._metrics = _Recording(store.database[store.collections.metrics], calls)
    store.runs("val_loss.min < 10", sort="val_loss.min", metrics={"val_loss": "min"}, limit=2)
    store.runs(sort="duration", limit=2)
    store.count("val_loss.min < 10")
    with pytest.raises(BadQuery, match="unknown field 'config.lrr'"):
        store.runs("config.lrr < 1")
    store.run(1)
    assert {kind for kind, _ in calls} == {"find", "find_one", "count_documents", "aggregate"}
    assert [call for call in calls if call[1] != 1234] == []


def test_a_read_stopped_at_the_time_limit_says_so(store):
    store._runs = _Recording(store.database[store.collections.runs], [], fail=True)
    with pytest.raises(TooSlow, match=r"MongoDB stopped the query after 5 s .*maxTimeMS.*narrow the filter"):
        store.runs("experiment matches 'a.*b'")
    with pytest.raises(TooSlow):
        store.run(1)
    assert issubclass(TooSlow, BadQuery)


def test_groups_by_a_config_key_with_the_spread_of_a_rollup(store):
    """Issue 15: runs grouped by a config key (the seeds of one setting), the mean and spread of a roll-up across
    each group, Sacred's runs by the same rule as ours, the filter respected, in one aggregation of the runs."""
    calls: list = []
    store._runs = _Recording(store.database[store.collections.runs], calls)
    store._metrics = _Recording(store.database[store.collections.metrics], calls)
    groups = store.groups("config.optim.name", "val_loss.min")
    assert [kind for kind, _ in calls] == ["aggregate", "find"]  # the runs grouped; run 4's series (Sacred's)
    assert list(groups.index) == ["adam", "sgd", None] and groups.index.name == "config.optim.name"
    assert groups.loc["adam"].to_dict() == pytest.approx(
        {"runs": 2, "count": 2, "mean": 0.25, "std": pd.Series([0.2, 0.3]).std(), "min": 0.2, "max": 0.3})
    sgd = groups.loc["sgd"]  # run 3 (ours, 0.85) and run 4 (Sacred's observer: computed from its series, 0.3)
    assert (sgd["runs"], sgd["count"], sgd["min"], sgd["max"]) == (2, 2, 0.3, 0.85)
    assert sgd["mean"] == pytest.approx(0.575)
    assert groups.loc[None, "runs"] == 1 and groups.loc[None, "count"] == 0  # run 5: no optim, no metric
    by_lr = store.groups("config.lr", "val_loss.last", "status == COMPLETED and val_loss.min < 0.35")
    assert list(by_lr.index) == [0.01, 0.1] and list(by_lr["runs"]) == [2, 1]
    assert by_lr.loc[0.01, "mean"] == pytest.approx(0.3) and by_lr.loc[0.01, "std"] == 0
    assert pd.isna(by_lr.loc[0.1, "std"])  # one run: no spread
    assert store.groups("experiment", "train.acc.max").loc["test_experiment", "count"] == 4
    for by, metric in (("config.$where", "val_loss.min"), ("lr", "val_loss.min"), ("config.lr", "val_loss.median")):
        with pytest.raises(BadQuery):
            store.groups(by, metric)


def test_sparklines_read_a_few_points_of_a_page_of_runs_in_one_aggregation(client, monkeypatch):
    """Issue 15: a sparkline per run of a page: at most 50 points spread over the series (first and last kept),
    picked in the database by one aggregation for the whole page, never from the chunks."""
    def main(_run, n):
        for step in range(n):
            _run.log_scalar("loss", float(step % 7), step * 2)

    for n in (1000, 3, 0):
        run_experiment(main, GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False), config={"n": n})
    store = sacred_gpu.connect(client=client)
    calls: list = []
    store._metrics = _Recording(store.database[store.collections.metrics], calls)
    store._chunks = _Recording(store.database[store.collections.chunks], calls)
    lines = store.sparklines([1, 2, 3], ["loss", "acc"])
    assert [kind for kind, _ in calls] == ["aggregate"]
    long = lines.loc[1, "loss"]
    assert len(long) == 50 and long[0] == (0, 0.0) and long[-1] == (1998, float(999 % 7))
    assert all(value == float(step // 2 % 7) for step, value in long)
    assert [step for step, _ in long] == sorted({step for step, _ in long})  # in order, no point twice
    assert lines.loc[2, "loss"] == [(0, 0.0), (2, 1.0), (4, 2.0)]  # a short series whole
    assert lines.loc[3, "loss"] == [] and lines.loc[1, "acc"] == []
    assert len(store.sparklines([1], "loss", points=10).loc[1, "loss"]) == 10
