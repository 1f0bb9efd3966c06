"""The run page's plots in headless Chromium: switch the x axis, smooth, zoom and see every point of the range load;
a running run's plots follow its new points."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from sacred_gpu import schema
from tests.support.long_runs import record_long_run

pytestmark = pytest.mark.browser

#: The state of one graph of the page: point count of each trace, x-axis title and range, the note, and how many
#: points of the first trace lie in [low, high] (numbers, or seconds for date strings are not counted).
GRAPH_STATE = """([type, key, value, low, high]) => {
    const holder = [...document.querySelectorAll('[id^="{"]')].find(element => {
        try { const id = JSON.parse(element.id); return id.type === type && id[key] === value; }
        catch (error) { return false; }
    });
    const graph = holder && holder.querySelector('.js-plotly-plot');
    if (!graph || !graph._fullData || !graph._fullData.length) { return null; }
    const traces = graph._fullData;  // decoded: the figure sends base64 typed arrays
    const xs = Array.from(traces[0].x);
    const notes = (graph.layout.annotations || []).map(a => a.text);
    return {points: traces.map(trace => trace.x.length), names: traces.map(trace => trace.name),
            title: graph.layout.xaxis.title.text, range: graph.layout.xaxis.range, note: notes.join(' | '),
            first: xs[0], inside: xs.filter(x => typeof x === 'number' && x >= low && x <= high).length,
            xs: xs.length <= 1000 ? xs : null};
}"""
RELAYOUT = """([type, key, value, update]) => {
    const holder = [...document.querySelectorAll('[id^="{"]')].find(element => {
        try { const id = JSON.parse(element.id); return id.type === type && id[key] === value; }
        catch (error) { return false; }
    });
    return Plotly.relayout(holder.querySelector('.js-plotly-plot'), update).then(() => true);
}"""
METRIC = ("run-plots-metric", "name")
SYSTEM = ("run-plots-system", "panel")


def graph(page: Any, kind: tuple[str, str], value: str, low: float = 0, high: float = 0) -> dict | None:
    return page.evaluate(GRAPH_STATE, [*kind, value, low, high])


def settle(page: Any) -> None:
    """Wait until no callback is in flight (Dash shows its loading marker meanwhile): a zoom made while a figure
    is still on its way is what a person would redo, not what these tests check."""
    page.wait_for_selector("._dash-loading-callback", state="detached")


def wait_for(page: Any, kind: tuple[str, str], value: str, check: Callable[[dict], bool], low: float = 0,
             high: float = 0, timeout: float = 30.0) -> dict:
    """Poll the graph until ``check(state)`` holds; fail with the last state seen."""
    deadline = time.monotonic() + timeout
    while True:
        state = graph(page, kind, value, low, high)
        if state is not None and check(state):
            return state
        if time.monotonic() > deadline:
            pytest.fail(f"graph {value!r} never got there; last state: {state}")
        time.sleep(0.1)


def zoom(page: Any, kind: tuple[str, str], value: str, update: dict, check: Callable[[dict], bool],
         watch: tuple[tuple[str, str], str] | None = None, low: float = 0, high: float = 0) -> dict:
    """Relayout a graph's x axis as the mouse does, then wait until graph ``watch`` (the same one if None) passes
    ``check``. Plotly's own ``autosize`` relayout, sent as a freshly drawn graph settles its size, can replace a zoom
    made in the same instant before Dash sends it (the server never hears of that zoom; seen once in five runs of a
    zoom right after the first draw): as a person would, the zoom is made again if nothing came of it."""
    watch_kind, watch_value = watch or (kind, value)
    for attempt in range(4):
        settle(page)
        page.evaluate(RELAYOUT, [*kind, value, update])
        try:
            return wait_for(page, watch_kind, watch_value, check, low, high, timeout=5.0 if attempt < 3 else 30.0)
        except pytest.fail.Exception:
            if attempt == 3:
                raise
    raise AssertionError("unreachable")


@pytest.fixture
def served(client: Any, serve: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    return serve(record_long_run(client, monkeypatch), refresh=1.0)  # a RUNNING run's plots: redrawn every 1 s


def test_switch_x_axis_smooth_and_zoom_into_every_point(page, served):
    page.goto(f"{served.url}/run/1/metrics")
    overview = wait_for(page, METRIC, "loss", lambda s: "overview of 30,000 points" in s["note"], 20_000, 21_000)
    assert overview["title"] == "step" and max(overview["points"]) <= 5_000
    assert overview["inside"] < 100  # the overview holds a preview of steps 20,000-21,000, not every point

    page.click("#run-plots-x label:has-text('wall time')")
    wall = wait_for(page, METRIC, "loss", lambda s: s["title"] == "wall time (UTC)")
    assert isinstance(wall["first"], str) and wall["first"].startswith("20")  # a date
    page.click("#run-plots-x label:has-text('step')")
    wait_for(page, METRIC, "loss", lambda s: s["title"] == "step")

    # zoom as a person does with the mouse: Plotly relayouts the x axis, the server sends every point of the range
    detail = zoom(page, METRIC, "loss", {"xaxis.range[0]": 20_000, "xaxis.range[1]": 21_000},
                  lambda s: s["inside"] == 1_001, low=20_000, high=21_000)
    assert "every point in range: 1,001" in detail["note"] and detail["range"] == [20_000, 21_000]

    # smoothing keeps the zoom: a faint raw line and the smoothed one, both with every point of the range
    mark = page.locator("#run-plots-smoothing >> text='0.75'").bounding_box()  # click the track at a mark
    page.mouse.click(mark["x"] + mark["width"] / 2, mark["y"] - 8)
    smoothed = wait_for(page, METRIC, "loss", lambda s: len(s["points"]) == 2, 20_000, 21_000)
    assert smoothed["inside"] == 1_001 and smoothed["points"][1] >= 1_001
    zoom(page, METRIC, "loss", {"xaxis.autorange": True}, lambda s: "overview of 30,000 points" in s["note"])
    assert page.js_errors == []


def test_slider_marks_do_not_overlap(page, served):
    """Issue 15 (5): the smoothing slider's marks read "0.90.99" where two sat 9 px apart."""
    page.goto(f"{served.url}/run/1/metrics")
    marks = page.locator("#run-plots-smoothing .dash-slider-mark")
    marks.first.wait_for()
    boxes = sorted((box["x"], box["x"] + box["width"]) for box in
                   (marks.nth(i).bounding_box() for i in range(marks.count())) if box)
    assert len(boxes) >= 3
    assert all(left_end <= right_start for (_, left_end), (right_start, _) in zip(boxes, boxes[1:])), boxes


def test_system_tab_draws_every_series_and_zooms_together(page, served):
    page.goto(f"{served.url}/run/1/system")
    page.wait_for_selector("text=GPU memory used: peak of each GPU, highest of the 2 GPUs")
    gpu = wait_for(page, SYSTEM, "gpu-util", lambda s: s["names"] == ["gpu0", "gpu1"])
    assert gpu["title"] == "time since start (s)" and "every sample" in gpu["note"]
    # every panel's data as CSV, from its panel: every sample
    with page.expect_download() as download:
        page.locator(".run-plot", has=page.locator("h5:has-text('GPU utilization')")).locator("a.panel-csv").click()
    header, *rows = Path(download.value.path()).read_text().splitlines()
    assert header == "time,gpu0,gpu1" and len(rows) >= 4
    assert len(gpu["xs"]) <= len(rows)  # drawn: a run of equal values as its two ends (issue 16: a light page)
    power = wait_for(page, SYSTEM, "gpu-power", lambda s: s["names"] == ["gpu0", "gpu1", "gpu0 limit", "gpu1 limit"])
    assert power["points"][2] == 2  # a limit that never changed: two points
    assert page.locator(".run-system h4").all_inner_texts() == ["GPU", "Run's processes", "Host"]
    page.click("#run-system-x label:has-text('wall time')")
    wait_for(page, SYSTEM, "gpu-util", lambda s: s["title"] == "wall time (UTC)")
    page.click("#run-system-x label:has-text('time since start')")
    wait_for(page, SYSTEM, "gpu-util", lambda s: s["title"] == "time since start (s)")
    # zooming one system panel shows the same range in every system panel
    start = dt.datetime.fromisoformat(served.store.run_plots(1).context["start"])
    seconds = sorted((dt.datetime.fromisoformat(row.split(",")[0]) - start).total_seconds() for row in rows)
    low, high = seconds[1], seconds[-2]
    memory = zoom(page, SYSTEM, "gpu-util", {"xaxis.range[0]": low, "xaxis.range[1]": high},
                  lambda s: s["range"] == [low, high], watch=(SYSTEM, "gpu-mem"))
    assert memory["note"] == f"every sample in range: {len(rows) - 2:,}"
    assert page.js_errors == []


def test_running_run_plots_follow_new_points_keep_the_zoom_and_add_new_metrics(page, served, db):
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    db.runs.update_one({"_id": 1}, {"$set": {"status": "RUNNING", "heartbeat": now}, "$unset": {"stop_time": ""}})
    page.goto(f"{served.url}/run/1/metrics")
    wait_for(page, METRIC, "acc", lambda s: s["points"] == [3])
    wait_for(page, METRIC, "loss", lambda s: "overview of 30,000 points" in s["note"])
    zoom(page, METRIC, "loss", {"xaxis.range[0]": 20_000, "xaxis.range[1]": 21_000}, lambda s: s["inside"] == 1_001,
         low=20_000, high=21_000)
    # the observer's next heartbeat, as it writes it: a point appended, the roll-up counted, the heartbeat moved
    acc = db.metrics.find_one({"run_id": 1, "name": "acc"})
    db.metrics.update_one({"_id": acc["_id"]}, {"$push": {"steps": 3, "values": 0.9, "timestamps": now}})
    db.runs.update_one({"_id": 1}, {"$set": {f"{schema.METRIC_ROLLUPS_FIELD}.acc.count": 4,
                                             f"{schema.METRIC_ROLLUPS_FIELD}.acc.last_step": 3,
                                             "heartbeat": now + dt.timedelta(seconds=1)}})
    # appended to the line drawn (extendData: only the new point is sent)
    wait_for(page, METRIC, "acc", lambda s: s["points"] == [4] and s["xs"][-1] == 3)
    settle(page)
    zoomed = graph(page, METRIC, "loss", 20_000, 21_000)
    assert zoomed["range"] == [20_000, 21_000] and zoomed["inside"] == 1_001  # the redraw kept the zoom
    # a metric logged for the first time gets its panel
    lr = db.metrics.insert_one({"run_id": 1, "name": "lr", "steps": [0, 1], "values": [0.1, 0.05],
                                "timestamps": [now, now]}).inserted_id
    db.runs.update_one({"_id": 1}, {"$push": {"info.metrics": {"name": "lr", "id": str(lr)}},
                                    "$set": {"heartbeat": now + dt.timedelta(seconds=2)}})
    wait_for(page, METRIC, "lr", lambda s: s["points"] == [2])
    # the rebuilt panels keep the range they showed, and so does the next redraw (the new graphs' last relayout is
    # Plotly's autosize, which says nothing of the range)
    wait_for(page, METRIC, "loss", lambda s: s["range"] == [20_000, 21_000] and s["inside"] == 1_001, 20_000, 21_000)
    db.metrics.update_one({"_id": lr}, {"$push": {"steps": 2, "values": 0.025, "timestamps": now}})
    db.runs.update_one({"_id": 1}, {"$set": {f"{schema.METRIC_ROLLUPS_FIELD}.lr.count": 3,
                                             "heartbeat": now + dt.timedelta(seconds=3)}})
    wait_for(page, METRIC, "lr", lambda s: s["points"] == [3])
    settle(page)
    redrawn = graph(page, METRIC, "loss", 20_000, 21_000)
    assert redrawn["range"] == [20_000, 21_000] and redrawn["inside"] == 1_001
    assert page.js_errors == []
