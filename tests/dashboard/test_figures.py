"""The run page's plots: pure figure builders (downsampling, EMA, x modes, log y, system panels) and the plain
functions behind the plots' callbacks, on runs recorded by the real observer."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
from dash import html
from dash.exceptions import PreventUpdate

from dashboard import figures, run_metrics, run_plots, run_system
from dashboard.board import Board
from sacred_gpu import GpuMongoObserver, connect, schema
from sacred_gpu.read import plot_reads, system_panels, system_summary
from sacred_gpu.testing.fake_nvml import FakeNvml
from tests.support.experiments import run_experiment
from tests.support.long_runs import record_long_run

START = dt.datetime(2026, 1, 1, 12, 0, 0)


def series(count: int, spike_at: int | None = None, dip_at: int | None = None) -> pd.DataFrame:
    """A noisy decreasing loss, one point per step and per second from START, with an optional spike and dip."""
    rng = np.random.default_rng(0)
    values = 1.0 / (1 + np.arange(count) / 1000) + rng.normal(0, 0.01, count)
    if spike_at is not None:
        values[spike_at] = 50.0
    if dip_at is not None:
        values[dip_at] = -50.0
    return pd.DataFrame({"step": np.arange(count), "value": values,
                         "timestamp": pd.date_range(START, periods=count, freq="s")})


def trace_points(figure, kind: str | None = None) -> list[int]:
    return [len(trace.x) for trace in figure.data if kind is None or trace.meta["kind"] == kind]


# -- pure functions ------------------------------------------------------------------------------------------------
def test_downsampling_keeps_at_most_5000_points_and_every_peak():
    frame = series(1_000_000, spike_at=777_777, dip_at=123_456)
    chosen = figures.downsample(frame["step"].to_numpy(), frame["value"].to_numpy())
    assert len(chosen) <= figures.MAX_POINTS and 777_777 in chosen and 123_456 in chosen
    assert np.all(np.diff(chosen) > 0)
    assert list(figures.downsample(np.arange(10), np.ones(10))) == list(range(10))  # short: every point
    figure = figures.metric_figure([figures.Line("loss", frame, START)])
    (trace,) = figure.data
    assert len(trace.x) <= figures.MAX_POINTS and max(trace.y) == 50.0 and min(trace.y) == -50.0
    assert 777_777 in trace.x


def test_ema_is_tensorboards_debiased_smoothing_and_weighs_step_gaps():
    assert figures.ema([1.0, 0.0, 0.0], smoothing=0.5) == pytest.approx([1.0, 1 / 3, 1 / 7])
    assert figures.ema([3.0, 3.0, 3.0], smoothing=0.9) == pytest.approx([3.0, 3.0, 3.0])
    assert list(figures.ema([1.0, 2.0], smoothing=0.0)) == [1.0, 2.0]
    # a gap of two steps where the series logs every step decays the past as two steps do: weight 0.5 ** 2
    gapped = figures.ema([1.0, 0.0, 0.0, 0.0], steps=[0, 1, 2, 4], smoothing=0.5)
    last, norm = 0.125, 0.875  # after steps 0, 1, 2 (weight 0.5 each)
    expected = (last * 0.25) / (norm * 0.25 + 0.75)
    assert gapped[-1] == pytest.approx(expected)
    with_nan = figures.ema([1.0, float("nan"), 0.0], smoothing=0.5)
    assert np.isnan(with_nan[1]) and with_nan[2] == pytest.approx(1 / 3)


def test_smoothing_keeps_the_raw_line_faint_under_the_smoothed_one():
    frame = series(20_000)
    figure = figures.metric_figure([figures.Line("loss", frame, START)], smoothing=0.9)
    raw, smooth = figure.data
    assert raw.meta["kind"] == "raw" and raw.opacity == figures.RAW_OPACITY and raw.showlegend is False
    assert smooth.meta["kind"] == "smoothed" and smooth.line.width > raw.line.width and smooth.opacity is None
    assert all(figures.MAX_POINTS - 2 <= points <= figures.MAX_POINTS for points in trace_points(figure))
    expected = figures.ema(frame["value"].to_numpy(), frame["step"].to_numpy(), 0.9)
    picked = np.asarray(smooth.x, dtype=int)
    assert np.allclose(np.asarray(smooth.y), expected[picked])
    assert np.std(np.diff(smooth.y)) < np.std(np.diff(raw.y))  # smoother


def test_x_modes_and_log_axis():
    frame = series(100)
    by_step = figures.metric_figure([figures.Line("loss", frame, START)])
    assert list(by_step.data[0].x[:3]) == [0, 1, 2] and by_step.layout.xaxis.title.text == "step"
    assert by_step.layout.yaxis.type == "linear"
    wall = figures.metric_figure([figures.Line("loss", frame, START)], x_mode="wall", log_y=True)
    assert pd.Timestamp(wall.data[0].x[0]) == START and wall.layout.xaxis.title.text == "wall time (UTC)"
    assert wall.layout.yaxis.type == "log"
    elapsed = figures.metric_figure([figures.Line("loss", frame, START - dt.timedelta(seconds=30))],
                                    x_mode="elapsed", x_range=(40, 60))
    assert list(elapsed.data[0].x[:2]) == [30.0, 31.0] and elapsed.layout.xaxis.title.text == "time since start (s)"
    assert list(elapsed.layout.xaxis.range) == [40, 60] and elapsed.layout.xaxis.autorange is False
    assert by_step.layout.uirevision != wall.layout.uirevision  # switching x mode resets the zoom
    with pytest.raises(ValueError):
        figures.metric_figure([figures.Line("loss", frame)], x_mode="epoch")


def test_runs_compared_in_one_panel_and_hostile_names_stay_text():
    hostile = '<img src=x onerror="window.__xss=1">'
    figure = figures.metric_figure([figures.Line("run 1", series(10)), figures.Line(hostile, series(20))])
    assert [len(t.x) for t in figure.data] == [10, 20] and figure.layout.showlegend
    assert "<img" not in figure.data[1].name and "&lt;img" in figure.data[1].name
    empty = figures.metric_figure([figures.Line("loss", series(0))])
    assert not empty.data and empty.layout.annotations[0].text == "no points"


def test_system_panels_group_gpus_and_host_metrics():
    columns = [f"sys/gpu{i}/{field}" for i in (10, 2, 0) for field in ("util_pct", "mem_used_mib", "temp_c")]
    columns += ["sys/cpu/util_pct", "sys/proc/rss_mib", "sys/mem/used_mib", "sys/net/rx_mib_s", "sys/gpu0/fan_pct"]
    panels = {panel.key: panel for panel in system_panels(columns)}
    assert list(panels) == ["gpu-util", "gpu-mem", "gpu-temp", "gpu-fan", "proc-rss", "cpu", "ram", "net"]
    assert [panels[key].group for key in panels] == ["GPU"] * 4 + ["Run's processes"] + ["Host"] * 3
    assert list(panels["gpu-util"].columns.values()) == ["gpu0", "gpu2", "gpu10"]
    assert panels["ram"].columns == {"sys/mem/used_mib": "host used"}
    assert panels["proc-rss"].columns == {"sys/proc/rss_mib": "RSS"}
    assert panels["gpu-temp"].unit == "°C" and panels["net"].columns == {"sys/net/rx_mib_s": "rx"}

    times = pd.date_range(START, periods=86_400, freq="s")
    util = np.full(len(times), 50.0)
    util[40_000] = 100.0  # a one-second spike
    samples = pd.DataFrame({"sys/gpu0/util_pct": util, "sys/gpu2/util_pct": 20.0}, index=times)
    figure = figures.system_figure(panels["gpu-util"], samples, x_mode="elapsed", start=START)
    assert [trace.name for trace in figure.data] == ["gpu0", "gpu2"]  # gpu10 has no samples here
    assert all(len(trace.x) <= figures.MAX_POINTS for trace in figure.data)
    assert max(figure.data[0].y) == 100.0 and 40_000.0 in figure.data[0].x
    assert figure.layout.xaxis.title.text == "time since start (s)" and figure.layout.yaxis.title.text == "%"
    wall = figures.system_figure(panels["gpu-util"], samples, x_mode="wall")
    assert pd.Timestamp(wall.data[0].x[0]) == START
    assert figures.system_figure(panels["cpu"], samples).layout.annotations[0].text == "no samples"


def test_every_catalog_row_is_drawn_limits_dashed_throttling_as_a_timeline():
    """Each series the observer records has a panel (issue 15: a third were drawn); a limit is dashed beside its
    GPU's line in the same colour; throttle reasons are drawn as the bits set, named."""
    from sacred_gpu.schema import catalog
    names = [spec.name.format(i=0, j=1) for spec in catalog.CATALOG]
    drawn = {column for panel in system_panels(names) for column in panel.columns}
    assert drawn == set(names)
    panels = {panel.key: panel for panel in system_panels(names)}
    times = pd.date_range(START, periods=4, freq="s")
    samples = pd.DataFrame({"sys/gpu0/power_w": [100.0, 250.0, 300.0, 310.0],
                            "sys/gpu0/power_limit_w": [300.0] * 4,
                            "sys/gpu0/throttle_reasons": [0, 0x4, 0x4 | 0x40, 0]}, index=times)
    power = figures.system_figure(panels["gpu-power"], samples)
    assert [(t.name, t.line.dash) for t in power.data] == [("gpu0", "solid"), ("gpu0 limit", "dash")]
    assert power.data[0].line.color == power.data[1].line.color
    throttle = figures.system_figure(panels["gpu-throttle"], samples)
    rows = {t.y[0]: len(t.x) for t in throttle.data}
    assert rows == {"gpu0: software power cap": 2, "gpu0: hardware thermal slowdown": 1}
    calm = figures.system_figure(panels["gpu-throttle"], samples.assign(**{"sys/gpu0/throttle_reasons": 0}))
    assert not calm.data and "no throttling" in calm.layout.annotations[-1].text


def test_a_series_of_one_point_is_drawn_as_a_marker():
    """Issue 15 (1): a line of one point draws nothing; a FAILED run's single loss must show."""
    one = figures.metric_figure([figures.Line("loss", series(1))])
    assert one.data[0].mode == "markers" and len(one.data[0].x) == 1
    assert figures.metric_figure([figures.Line("loss", series(5))]).data[0].mode == "lines"
    temp = system_panels(["sys/gpu0/temp_c"])[0]
    sample = pd.DataFrame({"sys/gpu0/temp_c": [61.0]}, index=pd.date_range(START, periods=1, freq="s"))
    assert figures.system_figure(temp, sample).data[0].mode == "markers"


def test_relayout_events():
    assert run_plots.parse_relayout({"xaxis.range[0]": 1, "xaxis.range[1]": 5, "yaxis.range[0]": 0}) == (1, 5)
    assert run_plots.parse_relayout({"xaxis.range": ["2026-01-01 00:00", "2026-01-02"]}) == ("2026-01-01 00:00",
                                                                                            "2026-01-02")
    assert run_plots.parse_relayout({"xaxis.autorange": True, "yaxis.autorange": True}) == "reset"
    assert run_plots.parse_relayout({"autosize": True}) is None and run_plots.parse_relayout(None) is None
    assert run_plots.parse_relayout({"yaxis.range[0]": 0, "yaxis.range[1]": 1}) is None


def test_zoom_a_callback_draws_from_what_set_it_off():
    loss, acc = {"type": run_metrics.METRIC, "name": "loss"}, {"type": run_metrics.METRIC, "name": "acc"}
    key = '{"name":"loss","type":"run-plots-metric"}.relayoutData'
    zoomed, autosize = {"xaxis.range[0]": 2, "xaxis.range[1]": 5}, {"autosize": True}

    def draw(triggered, relayouts, shown):
        return run_plots.zoom_to_draw(triggered, relayouts, shown, run_metrics.X_MODE)

    assert draw({key: loss}, [(loss, zoomed)], None) == (2, 5)
    assert draw({key: loss}, [(loss, {"xaxis.autorange": True})], [2, 5]) == "reset"
    with pytest.raises(PreventUpdate):  # Plotly sizing the graph, or a y-only zoom: nothing to redraw
        draw({key: loss}, [(loss, autosize)], [2, 5])
    # merged by Dash with an x-mode click: the click wins, though the relayout came first
    assert draw({key: loss, f"{run_metrics.X_MODE}.value": run_metrics.X_MODE}, [(loss, autosize)], [2, 5]) is None
    # smoothing, a re-read running run, or another input merged with an autosize: the range the panel shows
    assert draw({key: loss, f"{run_metrics.RUN}.data": run_metrics.RUN}, [(loss, autosize)], [2, 5]) == (2, 5)
    assert draw({f"{run_metrics.SMOOTHING}.value": run_metrics.SMOOTHING}, [(loss, zoomed)], [3, 4]) == (3, 4)
    assert draw({}, [(loss, None)], None) is None  # a first call
    # panels drawn together: the relayout of the panel that set it off, not another panel's older zoom
    acc_key = key.replace("loss", "acc")
    assert draw({acc_key: acc}, [(loss, autosize), (acc, {"xaxis.range": [7, 9]})], None) == (7, 9)
    with pytest.raises(PreventUpdate):
        draw({acc_key: acc}, [(loss, zoomed), (acc, autosize)], [7, 9])


def test_a_click_overtaken_by_an_autosize_relayout_is_still_drawn():
    """Issue 15 (14): the "wall time" click was lost after the run page's tests. Plotly's autosize relayout, sent
    while the click's request was in flight, came as a new request whose answer (nothing to redraw) replaced the
    click's. The panel keeps what it shows; a relayout that leaves x alone redraws a panel that shows another x
    mode, smoothing or scale than the controls ask for."""
    loss = {"type": run_metrics.METRIC, "name": "loss"}
    key = '{"name":"loss","type":"run-plots-metric"}.relayoutData'
    step = run_metrics.shown_state("step", 0, [], (2, 5))
    wall = run_metrics.shown_state("wall", 0, [])
    assert run_metrics._wanted_zoom({key: loss}, loss, {"autosize": True}, step, wall) is None  # drawn, in wall time
    smoothed = run_metrics.shown_state("step", 0.6, [])
    assert run_metrics._wanted_zoom({key: loss}, loss, {"autosize": True}, step, smoothed) == (2, 5)  # range kept
    with pytest.raises(PreventUpdate):  # it shows what is asked: nothing to redraw
        run_metrics._wanted_zoom({key: loss}, loss, {"autosize": True}, step, run_metrics.shown_state("step", 0, []))


# -- on recorded runs ----------------------------------------------------------------------------------------------
@pytest.fixture
def long_run(client, monkeypatch):
    board = Board(record_long_run(client, monkeypatch))
    view = board.store.run_plots(1)
    return board, run_metrics.layout(board, view), run_system.layout(board, view)


def run_data(layout: html.Div, store_id: str = run_metrics.RUN) -> dict:
    return next(child.data for child in layout.children if getattr(child, "id", None) == store_id)


def ids_in(component, kind: str) -> list[dict]:
    found = []
    if isinstance(getattr(component, "id", None), dict) and component.id.get("type") == kind:
        found.append(component.id)
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list) else [children] if children is not None else []:
        found += ids_in(child, kind)
    return found


def test_long_metric_overview_then_every_point_of_a_zoomed_range(long_run, monkeypatch):
    board, layout, _ = long_run
    run = run_data(layout)
    assert [i["name"] for i in ids_in(layout, run_metrics.METRIC)] == ["loss", "acc"]
    assert run["rollups"]["loss"]["count"] == 30_000
    overview = run_metrics.metric_panel(board, run, "loss")
    (trace,) = overview.data
    assert len(trace.x) < 30_000 and max(trace.y) == 100.0 and 25_000 in trace.x and trace.x[-1] == 29_999
    assert "overview of 30,000 points" in overview.layout.annotations[0].text
    zoomed = run_metrics.metric_panel(board, run, "loss", zoom=(20_000, 21_000))
    steps = list(zoomed.data[0].x)
    assert steps == list(range(20_000, 21_001)) and "every point in range: 1,001" in zoomed.layout.annotations[0].text
    assert list(zoomed.layout.xaxis.range) == [20_000, 21_000]
    # by wall time: the same range, read by the chunks' first_time/last_time
    stamps = board.store.metric_range(1, "loss", 20_000, 21_000)["timestamp"]
    wall = run_metrics.metric_panel(board, run, "loss", x_mode="wall", smoothing=0.5,
                              zoom=(str(stamps.iloc[0]), str(stamps.iloc[-1])))
    raw, smooth = wall.data
    assert len(raw.x) >= 1_001 and len(smooth.x) == len(raw.x) and wall.layout.xaxis.title.text == "wall time (UTC)"
    wide = run_metrics.metric_panel(board, run, "loss", zoom=(3_000, 29_000))  # too many points to read: the overview
    assert "every point in range: 26,001" in wide.layout.annotations[0].text
    monkeypatch.setattr(plot_reads, "RANGE_READ_LIMIT", 1_000)
    wide = run_metrics.metric_panel(board, run, "loss", zoom=(3_000, 29_000))
    assert "overview in range" in wide.layout.annotations[0].text and 25_000 in wide.data[0].x
    assert min(wide.data[0].x) >= 3_000 and max(wide.data[0].x) <= 29_000
    elapsed = run_metrics.metric_panel(board, run, "acc", x_mode="elapsed", log_y=True)
    assert len(elapsed.data[0].x) == 3 and elapsed.layout.yaxis.type == "log" and elapsed.data[0].x[0] >= 0
    assert "3 points, 3 drawn" in elapsed.layout.annotations[0].text


def test_metric_reads_overview_from_previews_and_ranges_from_overlapping_chunks(long_run, client):
    board, _, _ = long_run
    chunks = client["sacred"].metric_chunks
    doc = chunks.find_one({"name": "loss", "first_step": {"$lte": 25_000}, "last_step": {"$gte": 25_000}})
    steps = schema.unpack_column(doc["steps"])
    assert doc["last_step"] - doc["first_step"] == len(steps) - 1 == steps[-1] - steps[0]
    assert doc["first_time"] <= doc["last_time"]
    assert 100.0 in doc["preview"]["values"] and len(doc["preview"]["steps"]) <= 2 + 2 * 1_000 // 100
    overview = board.store.metric_overview(1, ["loss"])
    assert len(overview) < 2_000 + 28 * 22 and overview["step"].is_monotonic_increasing
    assert overview["step"].iloc[-1] == 29_999 and overview["value"].max() == 100.0
    assert board.store.metric_range(1, "loss", 2_500, 2_600)["step"].tolist() == list(range(2_500, 2_601))
    untimed = board.store.metric_range(1, "loss", 2_500, 2_600, timestamps=False)
    assert untimed["timestamp"].isna().all() and untimed["value"].tolist()[0] == 1.0 / 2_501
    assert board.store.metric_overview(1, ["loss"], timestamps=False)["step"].tolist() == overview["step"].tolist()
    # chunks written before first_step/preview existed: the range reads every chunk, the overview the decimated doc
    chunks.update_many({}, {"$unset": {"first_step": "", "last_step": "", "first_time": "", "last_time": "",
                                       "preview": ""}})
    assert board.store.metric_range(1, "loss", 2_500, 2_600)["step"].tolist() == list(range(2_500, 2_601))
    assert board.store.metric_range(1, "loss")["step"].tolist() == list(range(30_000))
    decimated = board.store.metric_overview(1, ["loss"])
    assert decimated["step"].iloc[-1] == 29_999 and len(decimated) <= 2 * 2_000 + 1


def test_gpu_panels_from_samples_or_heartbeat_windows_zoom_together(long_run, monkeypatch):
    board, _, layout = long_run
    run = run_data(layout, run_system.RUN)
    keys = [i["panel"] for i in ids_in(layout, run_system.SYSTEM)]
    assert keys[:5] == ["gpu-util", "gpu-mem", "gpu-mem-util", "gpu-power", "gpu-temp"] and "cpu" in keys
    figures_ = run_system.system_figures(board, run, keys)
    util = figures_[0]
    assert [trace.name for trace in util.data] == ["gpu0", "gpu1"]
    assert util.layout.annotations[0].text.startswith("every sample")
    times = sorted(util.data[0].x)
    zoom = (str(times[1]), str(times[-2]))
    zoomed = run_system.system_figures(board, run, keys, x_mode="wall", zoom=zoom)
    assert all(list(f.layout.xaxis.range) == list(zoom) for f in zoomed)  # every panel shows the zoomed range
    assert len({f.layout.uirevision for f in zoomed}) == 1 and zoomed[0].layout.uirevision != util.layout.uirevision
    monkeypatch.setattr(plot_reads, "SAMPLE_READ_LIMIT", 0)  # a long run: the overview draws heartbeat windows
    windows = run_system.system_figures(board, run, keys, x_mode="elapsed")
    assert "heartbeat windows" in windows[0].layout.annotations[0].text and windows[0].data
    assert windows[0].layout.xaxis.title.text == "time since start (s)"


def test_layout_shows_rollups_or_says_there_is_no_gpu_data(long_run, client):
    board, _, layout = long_run
    text = str(layout)
    assert "NVIDIA A100-SXM4-40GB" in text and "No GPU data" not in text
    # issue 15 (6): every aggregate says what it is (per GPU, and how the GPUs' values are combined)
    totals = {label: (value, unit) for label, value, unit in system_summary(board.store.run_plots(1).system).totals}
    assert "GPU memory used: peak of each GPU, highest of the 2 GPUs" in totals
    assert "GPU power: mean of each GPU, summed over the 2 GPUs" in totals
    assert "GPU utilization: mean of each GPU, averaged over the 2 GPUs" in totals
    assert totals["GPU energy: at the end of each GPU, summed over the 2 GPUs"][1] == "Wh"
    assert totals["GPUs"][0].startswith("2x NVIDIA ")

    def main(_run):
        _run.log_scalar("loss", 1.0, 0)
        time.sleep(0.2)

    run_experiment(main, GpuMongoObserver(client=client, nvml=FakeNvml([]), sample_interval=0.02))
    no_gpu = run_system.layout(board, board.store.run_plots(2))
    assert "No GPU data" in str(no_gpu) and [i["panel"] for i in ids_in(no_gpu, run_system.SYSTEM)][0] == "proc-cpu"


def test_running_run_is_reread_and_its_plots_redrawn_until_it_ends(client):
    """While a run is RUNNING the page's interval re-reads it: new points reach the plots; its end stops the
    interval. A real Sacred run, read while it goes on."""
    board = Board(connect(client=client))
    seen: dict[str, Any] = {}

    def recorded(count: int) -> dict:
        """The run's plot context once ``count`` points of 'loss' are in the database (written in the background)."""
        deadline = time.monotonic() + 10
        while True:
            context = board.store.run_plots(1).context if board.store.count() else {}
            if context.get("rollups", {}).get("loss", {}).get("count") == count or time.monotonic() > deadline:
                return context
            time.sleep(0.05)

    def main(_run):
        for step in range(5):
            _run.log_scalar("loss", 1.0 / (step + 1), step)
        recorded(5)
        layout = run_metrics.layout(board, board.store.run_plots(1))
        seen["tick"] = next(c for c in layout.children if getattr(c, "id", None) == run_metrics.TICK)
        seen["first"] = run_data(layout)
        seen["unchanged"] = run_plots.refreshed_context(board, seen["first"], run_metrics.trimmed)
        for step in range(5, 12):
            _run.log_scalar("loss", 1.0 / (step + 1), step)
        recorded(12)
        seen["later"] = run_plots.refreshed_context(board, seen["first"], run_metrics.trimmed)

    run_experiment(main, GpuMongoObserver(client=client, sampling=False), options={"--beat-interval": 0.1})
    first, later = seen["first"], seen["later"]
    assert first["running"] and seen["tick"].disabled is False
    unchanged = seen["unchanged"]  # None, unless a heartbeat landed in between (it moves the run's last time)
    assert unchanged is None or (unchanged["stop"] != first["stop"] and unchanged["rollups"] == first["rollups"])
    assert later["rollups"]["loss"]["count"] == 12 and later["running"]
    redrawn = run_metrics.metric_panel(board, later, "loss")
    assert len(redrawn.data[0].x) == 12  # every point: new ones are appended as they arrive (no count to go stale)
    assert redrawn.layout.annotations[0].text == "every point, new ones added as they arrive"
    ended = run_metrics.metric_panel(board, {**later, "running": False}, "loss")
    assert ended.layout.annotations[0].text == "12 points, 12 drawn"
    # a metric logged for the first time: the panels are rebuilt with their figures drawn in
    (panel,) = run_metrics.metric_panels(later, {"loss": run_metrics.metric_panel(board, later, "loss")})
    # sent with plain lists, which Plotly's extendTraces can append to (not base64 typed arrays)
    assert panel.children[1].children.figure["data"][0]["x"] == list(range(12))
    assert panel.children[2].data is None  # the range it shows: the whole series
    (zoomed,) = run_metrics.metric_panels(later, states={"loss": run_metrics.shown_state("step", 0, [], (2, 4))})
    assert zoomed.children[2].id == {"type": run_metrics.METRIC_ZOOM, "name": "loss"}
    assert zoomed.children[2].data == {"x": "step", "smoothing": 0.0, "log": False, "range": [2, 4], "seen": None}
    assert "logged no metrics" in str(run_metrics.metric_panels(run_metrics.trimmed({**later, "metric_names": []})))
    ended = run_plots.refreshed_context(board, later, run_metrics.trimmed)
    assert ended is not None and not ended["running"] and ended["stop"] is not None
    assert run_plots.refreshed_context(board, ended, run_metrics.trimmed) is None
    with pytest.raises(KeyError):
        run_plots.refreshed_context(board, dict(ended, run_id=99))
    finished = run_metrics.layout(board, board.store.run_plots(1))
    assert next(c for c in finished.children if getattr(c, "id", None) == run_metrics.TICK).disabled is True


def metric_reread(app: Any, name: str, context: dict, shown: dict | None, x_mode: str = "step",
                  smoothing: float = 0) -> Any:
    """The metric panel ``name``'s callback through Dash's HTTP path, triggered by a re-read of the run's context."""
    key = next(k for k in app.callback_map if '"type":"run-plots-metric"}.figure' in k)
    graph = {"name": name, "type": run_metrics.METRIC}
    zoom_id = {"name": name, "type": run_metrics.METRIC_ZOOM}
    return app.server.test_client().post("/_dash-update-component", json={
        "output": key, "outputs": [{"id": graph, "property": "figure"}, {"id": graph, "property": "relayoutData"},
                                   {"id": zoom_id, "property": "data"}, {"id": graph, "property": "extendData"}],
        "inputs": [{"id": run_metrics.X_MODE, "property": "value", "value": x_mode},
                   {"id": run_metrics.SMOOTHING, "property": "value", "value": smoothing},
                   {"id": run_metrics.LOG_Y, "property": "value", "value": []},
                   {"id": graph, "property": "relayoutData", "value": None},
                   {"id": run_metrics.RUN, "property": "data", "value": context}],
        "state": [{"id": graph, "property": "id", "value": graph}, {"id": zoom_id, "property": "data", "value": shown}],
        "changedPropIds": [f"{run_metrics.RUN}.data"]})


def answered(response: Any, name: str, prop: str) -> Any:
    """What a callback answered for the metric panel ``name``'s ``prop`` (``None`` where it left it alone)."""
    kind = run_metrics.METRIC_ZOOM if prop == "data" else run_metrics.METRIC
    key = json.dumps({"name": name, "type": kind}, separators=(",", ":"), sort_keys=True)
    return response.get_json()["response"].get(key, {}).get(prop)


def test_a_reread_run_sends_nothing_for_a_panel_without_new_points(long_run):
    """Issue 16: a running run's refresh sends nothing for an unchanged panel. Through Dash's HTTP path: the run's
    context re-read (its heartbeat moved) with no new point of 'loss' answers 204; a new point redraws it (30,000
    points: drawn as a downsampled overview, which new points cannot simply extend)."""
    from dashboard.app import create_app

    board, layout, _ = long_run
    run = run_data(layout)
    app = create_app(board)

    def reread(context: dict, shown: dict | None) -> Any:
        return metric_reread(app, "loss", context, shown)

    first = reread(run, None)
    assert first.status_code == 200
    shown = answered(first, "loss", "data")
    assert shown["seen"] == [30_000, 29_999]
    moved = {**run, "stop": "2099-01-01T00:00:00"}  # a heartbeat: the context changed, 'loss' did not
    assert reread(moved, shown).status_code == 204
    grown = {**moved, "rollups": {**run["rollups"], "loss": {**run["rollups"]["loss"], "count": 30_001}}}
    redrawn = reread(grown, shown)
    assert redrawn.status_code == 200 and answered(redrawn, "loss", "figure") is not None
    assert answered(redrawn, "loss", "extendData") is None


@pytest.mark.parametrize("x_mode", ["step", "wall"])
def test_a_reread_run_sends_only_the_new_points_of_a_panel_that_drew_every_point(client, x_mode):
    """Issue 16: a running run's refresh sends only the points newer than those drawn (Plotly's extendData), not
    its figure again. The panel was drawn when 'loss' had 12 points; 20 are stored now: steps 12-19 are sent."""
    from dashboard.app import create_app

    def main(_run):
        for step in range(20):
            _run.log_scalar("loss", 1.0 / (step + 1), step)

    run_experiment(main, GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False))
    board = Board(connect(client=client))
    app = create_app(board)
    now = board.store.run_plots(1).context
    assert now["rollups"]["loss"]["count"] == 20
    drawn = {**run_metrics.shown_state(x_mode, 0, []), "seen": [12, 11]}
    response = metric_reread(app, "loss", now, drawn, x_mode)
    assert response.status_code == 200
    assert answered(response, "loss", "figure") is None  # the figure is not sent again
    [extension, traces] = answered(response, "loss", "extendData")
    assert traces == [0] and extension["y"] == [[1.0 / (step + 1) for step in range(12, 20)]]
    if x_mode == "step":
        assert extension["x"] == [list(range(12, 20))]
    else:  # the points' wall times, as the figure's x
        stored = board.store.metrics(1, "loss")["timestamp"].iloc[12:20]
        assert abs(pd.to_datetime(extension["x"][0]) - pd.to_datetime(stored).to_numpy()).max() < pd.Timedelta("1ms")
    assert answered(response, "loss", "data")["seen"] == [20, 19]
    # a smoothed or zoomed panel is drawn again instead
    zoom = (0, 5) if x_mode == "step" else (now["start"], now["stop"])
    for shown, smoothing in ((run_metrics.shown_state(x_mode, 0.5, []), 0.5),
                             (run_metrics.shown_state(x_mode, 0, [], zoom), 0)):
        again = metric_reread(app, "loss", now, {**shown, "seen": [12, 11]}, x_mode, smoothing)
        assert answered(again, "loss", "extendData") is None and answered(again, "loss", "figure") is not None
