"""The comparison page as plain functions: run ids from the URL, config diff, legends, overlaid metrics, parallel
coordinates, GPU panels."""

from __future__ import annotations

import pytest

from dashboard.app import route
from dashboard.board import Board
from dashboard.pages import compare
from sacred_gpu import GpuMongoObserver
from sacred_gpu.testing.fake_nvml import FakeNvml, two_gpus
from tests.support.board_data import RUNS, record_runs
from tests.support.experiments import run_experiment


@pytest.fixture
def store(client):
    return record_runs(client, RUNS)


def test_run_ids_come_from_the_url():
    assert compare.parse_run_ids("?runs=3,1,3, 2") == [3, 1, 2]
    assert compare.parse_run_ids("runs=7&runs=x1") == [7, "x1"]
    assert len(compare.parse_run_ids("?runs=" + ",".join(map(str, range(50))))) == compare.MAX_RUNS
    with pytest.raises(ValueError, match="no runs to compare"):
        compare.parse_run_ids("?other=1")
    assert compare.compare_url([1, 2]) == "/compare?runs=1,2"


def test_config_diff_shows_only_keys_that_differ_and_legends_use_them(store):
    table = store.runs({"_id": {"$in": [1, 2, 5]}}, sort="id")
    diff = compare.config_diff(table)
    assert set(diff.index) == {"lr", "note", "seed"}  # all three differ; nothing else is in the config
    assert diff.loc["lr"].tolist() == [0.1, 0.01, 0.05]
    same = compare.config_diff(store.runs({"_id": {"$in": [1]}}))
    assert same.empty
    labels = compare.legend_labels(table, ["lr"])
    assert labels == {1: "#1 lr=0.1", 2: "#2 lr=0.01", 5: "#5 lr=0.05"}


def test_metrics_are_overlaid_one_line_per_run(store):
    table = store.runs({"_id": {"$in": [1, 2, 3]}}, sort="id")
    runs = compare.contexts(store, table)
    figs = compare.metric_figures(store, runs, compare.legend_labels(table, ["lr"]), "step", 0.6)
    assert sorted(figs) == ["acc", "loss"]
    names = [trace.name for trace in figs["loss"].data if trace.meta["kind"] == "smoothed"]
    assert names == ["#1 lr=0.1", "#2 lr=0.01", "#3 lr=0.001"]
    raw = [trace for trace in figs["loss"].data if trace.meta["kind"] == "raw"]
    assert list(raw[1].y) == [0.8, 0.3, 0.2] and raw[1].opacity < 1


def test_parallel_coordinates_put_config_against_a_metric_rollup(store):
    table = store.runs({"_id": {"$in": [1, 2, 3, 5]}}, sort="id", metrics={"loss": "min"})
    figure = compare.parcoords_figure(table, ["lr", "note"], "loss.min")
    dims = {d.label: d for d in figure.data[0].dimensions}
    assert list(dims["lr"].values) == [0.1, 0.01, 0.001, 0.05]
    assert list(dims["note"].ticktext) == ["<script>window.__xss=1</script>", "plain"]  # text as categories
    assert list(dims["loss.min"].values) == [0.4, 0.2, 0.6, 0.25]
    assert list(figure.data[0].line.color) == [0.4, 0.2, 0.6, 0.25]


def test_gpu_panels_per_run_and_a_note_without_gpus(client, store):
    def main(_run):
        import time
        time.sleep(0.5)

    run_experiment(main, GpuMongoObserver(client=client, nvml=FakeNvml(two_gpus()), sample_interval=0.05),
                   config={"lr": 0.3, "note": "gpu"})
    table = store.runs({"_id": {"$in": [1, 6]}}, sort="id")
    (first, none), (sixth, figure) = compare.gpu_figures(Board(store), compare.contexts(store, table))
    assert (first, none) == (1, None)
    assert sixth == 6 and {trace.name for trace in figure.data} == {"gpu0", "gpu1"}


def test_page_renders_runs_diff_and_panels_and_explains_bad_urls(store):
    board = Board(store)
    page = str(route(board, "/compare", "?runs=1,2,999"))
    assert "Compare 2 runs" in page and "not found: 999" in page and "compare-config-diff" in page
    assert "no runs to compare" in str(route(board, "/compare", ""))
