"""The notebook API as a pandas user meets it (issue 23): on runs recorded by our observer and by Sacred's, each
answer compared with what was logged or with plain pandas on the full frame."""

from __future__ import annotations

import gridfs
import numpy as np
import pandas as pd
import pytest
from sacred.observers import MongoObserver

import sacred_gpu
from sacred_gpu import GpuMongoObserver
from sacred_gpu.read import BadQuery, NotFound
from sacred_gpu.testing.fake_nvml import FakeNvml
from tests.support.experiments import run_experiment

RESULTS = {0.1: np.float64(0.8), 0.01: np.float32(0.7), 0.001: 0.3}


@pytest.fixture
def store(client):
    """Runs 1-3 by our observer (results: a numpy float64, a float32, a float), 4 by Sacred's observer (a numpy
    float32 result, a NaN in its loss, a --comment), 5 by ours with a string-valued config key."""
    def main(_run, lr, opt):
        for step, loss in enumerate([3.0, float("nan"), 1.0, 2.0]):
            _run.log_scalar("loss", loss * lr, step)
        return RESULTS[lr] if lr in RESULTS else np.float32(0.7)

    config = {"opt": {"name": "adam"}, "s": "1e-3"}
    for lr in RESULTS:
        run_experiment(main, GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False),
                       config={"lr": lr, **config})
    db = client["sacred"]
    stock = MongoObserver.create_from(db.runs, gridfs.GridFS(db), metrics_collection=db.metrics)
    run_experiment(main, stock, config={"lr": 0.5, **config}, options={"--comment": "commented by sacred"})
    return sacred_gpu.connect(client=client)


def test_custom_columns_inside_fields_the_table_reads_have_their_values(store):
    frame = store.runs(columns=["config.lr", "config.opt.name", "omniboard.tags", "host", "result"], sort="id")
    assert frame["config.lr"].tolist() == [0.1, 0.01, 0.001, 0.5]
    assert frame["config.opt.name"].tolist() == ["adam"] * 4 and frame["host"].notna().all()


def test_numpy_results_are_numbers_filtered_and_sorted_by_value(store):
    frame = store.runs(sort="id")
    assert frame["result"].tolist() == pytest.approx([0.8, 0.7, 0.3, 0.7])  # run 4: Sacred's jsonpickle, decoded
    assert list(store.runs("result > 0.5", sort="id").index) == [1, 2, 4]
    assert list(store.runs("result != 0.3", sort="id").index) == [1, 2, 4]
    expected = list(frame.sort_values(["result"], ascending=False, kind="stable").index)
    assert list(store.runs(sort="-result").index)[0] == expected[0] == 1
    assert sorted(store.runs(sort="-result")["result"], reverse=True) == list(store.runs(sort="-result")["result"])


def test_sorting_by_a_shown_column_sorts_by_it_and_a_typo_is_an_error(store):
    frame = store.runs()
    by_duration = store.runs(sort="-duration")
    assert list(by_duration["duration"]) == sorted(frame["duration"], reverse=True)
    with pytest.raises(BadQuery, match="config.lrr.*did you mean 'config.lr'"):
        store.runs(sort="config.lrr")


@pytest.mark.parametrize(("query", "says"), [
    ("config.lrr < 1", "unknown field 'config.lrr' (no run has it); did you mean 'config.lr'"),
    ("los.min < 0.5", "unknown metric 'los' (no run logged it); did you mean 'loss'"),
    ("config.lr > 'abc'", "config.lr holds numbers"),
    ("config.s == 1e-3", "config.s holds text ('1e-3') and 0.001 was read as a number: quote it"),
])
def test_a_filter_that_can_never_match_says_why(store, query, says):
    with pytest.raises(BadQuery, match=says.replace("(", r"\(").replace(")", r"\)")):
        store.runs(query)
    assert sorted(store.runs("config.s == '1e-3'").index) == [1, 2, 3, 4]  # quoted, it matches every run


def test_an_unknown_metric_column_is_an_error_and_a_filter_matching_nothing_keeps_its_columns(store):
    with pytest.raises(BadQuery, match="'nope'"):
        store.runs(metrics={"nope": "min"})
    empty = store.runs("config.lr > 10", metrics={"loss": "min"})
    assert empty.empty and {"config.lr", "loss.min", "status", "result"} <= set(empty.columns)
    assert empty[["config.lr", "loss.min"]].empty


def test_a_run_that_does_not_exist_is_not_found_for_every_per_run_read(store):
    for read in (lambda: store.metrics(999), lambda: store.system(999), lambda: store.run(999),
                 lambda: store.metric_overview(999), lambda: store.metric_range(999, "loss")):
        with pytest.raises(NotFound, match="999") as caught:
            read()
        assert isinstance(caught.value, LookupError)
    assert store.metrics(1, names="loss")["name"].unique().tolist() == ["loss"]


def test_notes_filter_what_the_notes_column_shows(store):
    frame = store.runs(sort="id")
    assert frame.loc[4, "notes"] == "commented by sacred"
    assert list(store.runs("notes contains commented").index) == [4]


def test_sacreds_runs_roll_up_by_the_rule_ours_do(store):
    """The same series in both formats: NaN skipped, the same min, mean, first and last."""
    frame = store.runs(metrics={"loss": ["min", "mean", "first", "last"]}, sort="id")
    series = store.metrics(4, "loss")["value"]
    plain = pd.Series(series).dropna()
    assert frame.loc[4, "loss.mean"] == pytest.approx(plain.mean()) and frame.loc[4, "loss.min"] == plain.min()
    assert frame.loc[4, "loss.first"] == plain.iloc[0] and frame.loc[4, "loss.last"] == plain.iloc[-1]
    ours = frame.loc[1]
    assert ours["loss.mean"] == pytest.approx(2.0 * 0.1) and ours["loss.min"] == pytest.approx(0.1)


def test_a_tz_aware_client_reads_live_and_dead_runs():
    import datetime as dt

    import mongomock

    client = mongomock.MongoClient(tz_aware=True)
    now = dt.datetime.now(dt.timezone.utc)
    client["sacred"].runs.insert_many([
        {"_id": 1, "status": "RUNNING", "start_time": now - dt.timedelta(hours=2), "heartbeat": now - dt.timedelta(
            hours=2), "experiment": {"name": "x"}},
        {"_id": 2, "status": "RUNNING", "start_time": now, "heartbeat": now, "experiment": {"name": "x"}}])
    store = sacred_gpu.connect(client=client)
    assert store.runs(sort="id")["status"].tolist() == ["PROBABLY_DEAD", "RUNNING"]
    assert list(store.runs("status == PROBABLY_DEAD").index) == [1]
    assert list(store.runs("status == RUNNING").index) == [2]


def test_sacreds_runs_sort_and_filter_by_roll_ups_beside_ours(store):
    """Run 4's loss (Sacred's format, a NaN in it) rolls up as ours do: sorted among ours, filtered by its mean."""
    frame = store.runs(metrics={"loss": ["min", "mean"]})
    expected = list(frame.sort_values("loss.min", kind="stable").index)
    assert list(store.runs(sort="loss.min").index) == expected == [3, 2, 1, 4]
    assert [run_id for skip in range(4) for run_id in store.runs(sort="-loss.min", limit=1, skip=skip).index] == [
        4, 1, 2, 3]
    assert list(store.runs("loss.mean > 0.5").index) == list(frame[frame["loss.mean"] > 0.5].index) == [4]
