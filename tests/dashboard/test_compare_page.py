"""The comparison page as plain functions: run ids from the URL, config diff, legends, overlaid metrics, parallel
coordinates, GPU overlays; a layout without database work, filled by a callback on page load."""

from __future__ import annotations

import pytest
from dash import dcc, html

from dashboard import compare_actions as actions
from dashboard.app import create_app, route
from dashboard.board import Board
from dashboard.compare_figures import parcoords_figure
from dashboard.pages import compare
from tests.support.board_data import RUNS, gpu_run, record_runs
from tests.support.components import by_id, of_type, text


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
    diff = actions.config_diff(table)
    assert set(diff.index) == {"lr", "note", "seed"}  # all three differ; nothing else is in the config
    assert diff.loc["lr"].tolist() == [0.1, 0.01, 0.05]
    same = actions.config_diff(store.runs({"_id": {"$in": [1]}}))
    assert same.empty
    labels = actions.legend_labels(table, ["lr"])
    assert labels == {1: "#1 lr=0.1", 2: "#2 lr=0.01", 5: "#5 lr=0.05"}


def test_metrics_are_overlaid_one_line_per_run(store):
    table = store.runs({"_id": {"$in": [1, 2, 3]}}, sort="id")
    runs = actions.contexts(store, table)
    figs = actions.metric_figures(store, runs, actions.legend_labels(table, ["lr"]), "step", 0.6)
    assert sorted(figs) == ["acc", "loss"]
    names = [trace.name for trace in figs["loss"].data if trace.meta["kind"] == "smoothed"]
    assert names == ["#1 lr=0.1", "#2 lr=0.01", "#3 lr=0.001"]
    raw = [trace for trace in figs["loss"].data if trace.meta["kind"] == "raw"]
    assert list(raw[1].y) == [0.8, 0.3, 0.2] and raw[1].opacity < 1


def test_a_metric_only_one_run_logged_has_a_legend_naming_that_run(client, store):
    gpu_run(client, 0.3, metric="grad_norm")
    table = store.runs({"_id": {"$in": [1, 6]}}, sort="id")
    figs = actions.metric_figures(store, actions.contexts(store, table), actions.legend_labels(table, ["lr"]),
                                  "step", 0.0)
    assert figs["grad_norm"].layout.showlegend is True
    assert [(trace.name, trace.showlegend) for trace in figs["grad_norm"].data] == [("#6 lr=0.3", True)]


def test_parallel_coordinates_put_config_against_a_metric_rollup(store):
    table = store.runs({"_id": {"$in": [1, 2, 3, 5]}}, sort="id", metrics={"loss": "min"})
    figure = parcoords_figure(table, ["lr", "note"], "loss.min")
    dims = {d.label: d for d in figure.data[0].dimensions}
    assert list(dims["lr"].values) == [0.1, 0.01, 0.001, 0.05]
    assert list(dims["note"].ticktext) == ["<script>window.__xss=1</script>", "plain"]  # text as categories
    assert list(dims["loss.min"].values) == [0.4, 0.2, 0.6, 0.25]
    assert list(figure.data[0].line.color) == [0.4, 0.2, 0.6, 0.25]


def test_gpu_utilization_and_memory_are_one_overlay_each_a_line_per_run_and_gpu(client, store):
    gpu_run(client, 0.3)
    gpu_run(client, 0.4)
    table = store.runs({"_id": {"$in": [1, 6, 7]}}, sort="id")
    overlays, without = actions.gpu_overlays(store, actions.contexts(store, table))
    assert without == [1]
    assert list(overlays) == ["GPU utilization", "GPU memory used"]
    for figure in overlays.values():
        assert [trace.name for trace in figure.data] == ["#6 gpu0", "#6 gpu1", "#7 gpu0", "#7 gpu1"]
        assert figure.layout.xaxis.title.text == "time since start (s)" and figure.layout.showlegend is True
        for trace in figure.data:  # x: seconds since each run's own start, not wall time
            assert 0 <= min(trace.x) < 1 and max(trace.x) < 5
    colors = [trace.line.color for trace in overlays["GPU utilization"].data]
    assert colors[0] == colors[1] != colors[2] == colors[3]  # a colour per run, a dash per GPU


def test_layout_does_no_database_work_and_the_page_load_fills_it(store):
    unreadable = Board(store=None)  # any database work in the layout would fail on it
    page = route(unreadable, "/compare", "?runs=1,2,999")
    assert by_id(page, compare.RUNS).data == [1, 2, 999] and text(by_id(page, compare.TITLE)) == "Compare runs"
    assert text(by_id(page, compare.COMPARED)) == compare.LOADING and "not found" not in text(page)
    [said] = of_type(route(unreadable, "/compare", ""), html.P)
    assert text(said).startswith("no runs to compare: ")
    board = Board(store)
    with create_app(board).server.app_context():
        title, compared, options, legend, metrics, diff, par_options, par_metric, gpu = compare.load([1, 2, 999])
        drawn = compare.draw_metrics(legend, "step", 0.0, [1, 2], [{"type": compare.METRIC, "name": "loss"}])
    assert title == "Compare 2 runs" and text(compared[0]) == "not found: 999"
    assert [link.href for link in of_type(compared, dcc.Link)] == ["/run/1", "/run/2"]
    assert options == ["lr", "seed"] and legend == ["lr", "seed"]
    assert [graph.id for graph in of_type(metrics, dcc.Graph)] == [{"type": compare.METRIC, "name": "acc"},
                                                                   {"type": compare.METRIC, "name": "loss"}]
    assert diff.id == "compare-config-diff" and [text(row.children[0]) for row in of_type(diff, html.Tbody)[0].children
                                                 ] == ["lr", "seed"]
    assert par_options == ["acc", "loss"] and par_metric == "acc"
    assert [text(note) for note in of_type(gpu, html.P)] == ["no GPU data for #1, #2"] and not of_type(gpu, dcc.Graph)
    assert [trace.name for trace in drawn[0].data] == [f"#1 lr=0.1 seed={store.run(1)['config']['seed']}",
                                                        f"#2 lr=0.01 seed={store.run(2)['config']['seed']}"]

