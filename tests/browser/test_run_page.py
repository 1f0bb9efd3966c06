"""A person's path through a run's page, in headless Chromium: previews, downloads, hostile content, ANSI colours,
output search, the live tail, the truncation marker, the fail trace, tags and notes."""

from __future__ import annotations

import datetime as dt
import io
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from sacred_gpu import GpuMongoObserver, schema
from sacred_gpu.read import connect
from sacred_gpu.testing.fake_nvml import FakeNvml
from tests.support.board_data import HOSTILE, SCRIPT
from tests.support.experiments import run_experiment
from tests.support.run_page_data import record_page_runs, tiny_png

pytestmark = pytest.mark.browser


@pytest.fixture
def served(client: Any, serve: Any, tmp_path: Any) -> Any:
    return serve(record_page_runs(client, tmp_path), refresh=1.0)


#: What each tab shows once it is loaded, looked for inside that tab's own body (tabs share classes: the Code and
#: Artifacts tabs both list ``.file-row``, the Metrics and System tabs are both ``.run-plots``; a click from one to
#: the other found what the tab being left showed, before the new tab arrived).
LOADED = {tab: f".run-tab-{tab}-body {shown}" for tab, shown in {
    "overview": "#run-tags", "output": "#run-output", "artifacts": ".file-row", "code": ".file-row",
    "config": "#run-config", "info": "#run-info", "metrics": ".run-plots", "system": ".run-system"}.items()}


def open_run(page: Any, served: Any, run_id: int, tab: str = "overview") -> None:
    page.goto(f"{served.url}/run/{run_id}" + ("" if tab == "overview" else f"/{tab}"))
    page.wait_for_selector(LOADED[tab])


def previews_loaded(page: Any) -> None:
    """Wait until the tab's image and video previews have loaded: until then the rows below them move (a click
    aimed at a link there can land beside it)."""
    page.wait_for_function("[...document.images].every(i => i.complete) && "
                           "[...document.querySelectorAll('video')].every(v => v.readyState >= 1 || v.error)")


def row(page: Any, name: str) -> Any:
    """The row of a source or an artifact, by its name."""
    return page.locator(".file-row", has=page.locator(f'.file-name:text-is("{name}")'))


def test_tabs_load_when_opened_and_the_url_names_them(page, served):
    """Issue 15: a run's page in tabs; a click opens a tab without reloading the page, its URL can be shared, the
    browser's back button returns to the previous tab."""
    open_run(page, served, 1)
    assert page.locator("#run-output").count() == 0  # the output tab is not built until opened
    page.evaluate("window.__same_page = true")
    for tab, label in (("output", "Output"), ("config", "Config"), ("code", "Code & dependencies"),
                       ("artifacts", "Artifacts"), ("info", "Info"), ("system", "System"), ("metrics", "Metrics")):
        page.click(f".run-tabs a:text-is('{label}')")
        page.wait_for_selector(LOADED[tab])
        assert page.url == f"{served.url}/run/1/{tab}"
        assert page.get_attribute(f"#run-tab-{tab}", "class") == "run-tab run-tab-active"
        assert page.inner_text("#run-status") == "COMPLETED"
    assert page.evaluate("window.__same_page") is True  # no reload
    page.go_back()
    page.wait_for_selector(LOADED["system"])
    open_run(page, served, 1, "config")  # a shared link opens its tab
    assert SCRIPT in page.inner_text("#run-config")
    assert page.js_errors == []


def test_image_preview_csv_grid_and_downloads(page, served):
    open_run(page, served, 1, "artifacts")
    image = row(page, "plot.png").locator("img.artifact-image")
    image.wait_for(state="visible")
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    assert page.evaluate("document.querySelector('img.artifact-image').naturalWidth") == 3  # a decoded image
    grid = row(page, "table.csv")
    grid.locator(".ag-header-cell-text", has_text="loss").wait_for()
    assert grid.locator(".ag-row").count() == 5
    with page.expect_download() as download:
        row(page, "plot.png").locator("button.download").click()
    assert Path(download.value.path()).read_bytes() == tiny_png()
    with page.expect_download() as download:
        page.click("#run-artifacts-zip")
    with zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())) as archive:
        assert len(archive.namelist()) == 6 and archive.read("plot.png") == tiny_png()
    open_run(page, served, 1, "code")
    with page.expect_download() as download:
        row(page, "experiments.py").locator("button.download").click()
    assert download.value.suggested_filename == "experiments.py"
    assert Path(download.value.path()).read_bytes() == served.store.source(1, "experiments.py")
    assert page.js_errors == []


def test_a_large_artifact_downloads_through_the_streaming_route(page, served, monkeypatch):
    monkeypatch.setattr("dashboard.run_artifacts.DOWNLOAD_BYTES", 500)  # weights.bin (1 KB) counts as large
    open_run(page, served, 1, "artifacts")
    previews_loaded(page)
    link = row(page, "weights.bin").locator("a.download")
    link.scroll_into_view_if_needed()
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "weights.bin"
    assert Path(download.value.path()).read_bytes() == bytes(range(256)) * 4


def test_previews_and_sources_open_and_close(page, served):
    open_run(page, served, 1, "artifacts")
    plot = row(page, "plot.png")
    plot.locator("img").wait_for()
    plot.locator("button.toggle").click()
    plot.locator("img").wait_for(state="detached")
    assert plot.locator("button.toggle").inner_text() == "View"
    plot.locator("button.toggle").click()
    plot.locator("img").wait_for(state="visible")
    open_run(page, served, 1, "code")
    row(page, "experiments.py").locator("code.hljs .hljs-keyword").first.wait_for()  # highlighted, open at load
    init = row(page, "__init__.py")
    assert init.locator(".source-code").count() == 0
    init.locator("button.toggle").click()
    init.locator(".source-code").wait_for()
    assert init.locator("button.toggle").inner_text() == "Hide"


def test_hostile_html_artifact_and_output_run_no_script(page, served):
    open_run(page, served, 1, "artifacts")
    frame = row(page, "report.html").locator("iframe.artifact-html")
    frame.wait_for()
    assert frame.get_attribute("sandbox") == ""
    assert SCRIPT in frame.get_attribute("srcdoc")
    time.sleep(0.5)  # what the frame would run has had its chance
    assert page.evaluate("window.__xss") is None
    open_run(page, served, 1, "output")
    lines = page.locator("#run-output .out-line")
    assert lines.nth(1).inner_text() == SCRIPT and lines.nth(2).inner_text() == HOSTILE
    assert page.locator("#run-output img, #run-output script").count() == 0
    open_run(page, served, 1, "config")
    assert SCRIPT in page.inner_text("#run-config")
    assert page.evaluate("window.__xss") is None
    assert page.js_errors == []


def test_ansi_colours_and_output_search(page, served):
    open_run(page, served, 1, "output")
    red = page.locator("#run-output .ansi-fg-1").first
    assert red.inner_text() == "error-ish red text"
    assert red.evaluate("e => getComputedStyle(e).color") == "rgb(255, 123, 114)"
    assert "\x1b" not in page.inner_text("#run-output") and "[31m" not in page.inner_text("#run-output")
    assert page.inner_text("#run-output-summary") == "6 lines"
    page.fill("#run-output-search", "EPOCH")
    page.wait_for_selector("#run-output-summary:has-text('3 of 6 lines match')")
    assert page.locator("#run-output mark.out-match").all_inner_texts() == ["epoch"] * 3
    assert page.locator("#run-output .out-line").count() == 3
    page.fill("#run-output-search", "")
    page.wait_for_selector("#run-output-summary:text-is('6 lines')")
    assert page.locator("#run-output .out-line").count() == 6


def test_truncation_marker_is_visible(page, served):
    open_run(page, served, 3, "output")
    assert page.locator(".out-cut-note").is_visible()
    assert "cut 3,400 characters" in page.inner_text(".out-cut-note")
    marker = page.locator("#run-output .out-marker")
    marker.scroll_into_view_if_needed()
    assert marker.is_visible() and "characters of output cut here (output_cap=2000)" in marker.inner_text()
    assert marker.evaluate("e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"


def test_fail_trace_of_a_failed_run(page, served):
    open_run(page, served, 2)
    assert page.inner_text("#run-status") == "FAILED"
    trace = page.locator("#run-fail-trace")
    assert trace.is_visible() and "RuntimeError: diverged at step 3" in trace.inner_text()


def test_live_tail_while_running(page, served, db):
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    db.runs.update_one({"_id": 1}, {"$set": {"status": "RUNNING", "heartbeat": now}})
    open_run(page, served, 1, "output")
    assert page.inner_text("#run-status") == "RUNNING" and "live" in page.inner_text("#run-live")
    output = served.store.captured_out(1)
    db.runs.update_one({"_id": 1}, {"$set": {"captured_out": output + "\x1b[32mepoch 3 loss 0.25\x1b[0m\n",
                                             "heartbeat": now}})
    page.wait_for_selector("#run-output .out-line .ansi-fg-2:text-is('epoch 3 loss 0.25')")
    page.fill("#run-output-search", "loss")  # a search while it runs
    page.wait_for_selector("#run-output-summary:has-text('lines match')")
    db.runs.update_one({"_id": 1}, {"$set": {"status": "COMPLETED", "result": 0.9777777777777777}})
    page.wait_for_selector("#run-status:text-is('COMPLETED')")  # the header follows without a reload
    assert page.inner_text("#run-live") == ""
    assert page.evaluate("document.getElementById('run-status').className") == "status status-COMPLETED"
    assert "Result\n0.977778" in page.inner_text(".run-facts")  # issue 15 (7): rounded
    page.fill("#run-output-search", "epoch")  # issue 15 (2): searching an ended run says nothing of reloading
    page.wait_for_selector("#run-output-summary:has-text('lines match')")
    assert "reload" not in page.inner_text(".run-page") and page.inner_text("#run-output-note") == ""


def test_tags_and_notes_are_saved(page, served):
    open_run(page, served, 1)
    page.fill("#run-tags", "baseline, best")
    page.fill("#run-notes", SCRIPT)
    page.click("#run-save")
    page.wait_for_selector("#run-saved:has-text('saved tags and notes')")
    assert served.store.run(1)["omniboard"] == {"tags": ["baseline", "best"], "notes": SCRIPT}
    page.reload()
    page.wait_for_selector("#run-tags")
    assert page.input_value("#run-tags") == "baseline, best" and page.input_value("#run-notes") == SCRIPT


def test_read_only_board_offers_no_edits_on_the_page(page, client, serve, tmp_path):
    served = serve(record_page_runs(client, tmp_path), read_only=True)
    open_run(page, served, 1)
    assert page.locator("#run-tags").is_disabled() and page.locator("#run-notes").is_disabled()
    assert page.locator("#run-save").is_disabled()


def test_a_run_that_failed_at_once_shows_what_it_printed(page, client, serve):
    """Issue 15 (13): a failed run's page said "no output captured" though the script printed two lines (Sacred's
    capture is read at heartbeats only; the observer keeps what a failing run printed since the last one)."""
    def main():
        print("loading the data")
        print("building the model")
        raise MemoryError("out of memory")

    with pytest.raises(MemoryError):
        run_experiment(main, GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False),
                       options={"--capture": "sys"})
    served = serve(connect(client=client), refresh=1.0)
    open_run(page, served, 1, "output")
    assert page.inner_text("#run-status") == "FAILED"
    assert page.locator("#run-output .out-line").all_inner_texts()[:2] == ["loading the data", "building the model"]
    open_run(page, served, 1)
    assert "MemoryError: out of memory" in page.inner_text("#run-fail-trace")


def test_a_silent_run_a_missing_run_and_a_run_of_ten_thousand_metrics(page, served, db):
    """Issue 15: a run without a recent heartbeat is not said to be live (9); a run id no MongoDB integer holds is
    "no such run", not a server error (10); a run with 10,000 metrics renders, its panels found by name (12); a
    series of one point is drawn (1)."""
    old = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(hours=2)
    db.runs.update_one({"_id": 1}, {"$set": {"status": "RUNNING", "heartbeat": old}})
    open_run(page, served, 1)
    assert page.inner_text("#run-status") == "PROBABLY_DEAD"
    live = page.inner_text("#run-live")
    assert live.startswith("no heartbeat since") and "probably died" in live and "live:" not in live

    page.goto(f"{served.url}/run/99999999999999999999999")
    page.wait_for_selector("h2:text-is('No such run')")

    names = [f"layer{i}/grad_norm" for i in range(10_000)]
    metrics = db.metrics.insert_many([{"run_id": 70, "name": name, "steps": [0], "values": [0.5],
                                       "timestamps": [old]} for name in names[:60]]).inserted_ids
    db.runs.insert_one({"_id": 70, "status": "FAILED", "format": schema.FORMAT, "start_time": old, "stop_time": old,
                        "experiment": {"name": "wide"}, "info": {"metrics": [
                            {"id": str(metrics[i]) if i < 60 else f"m{i}", "name": name}
                            for i, name in enumerate(names)]},
                        "metric_rollups": {schema.rollup_key(name): {"count": 1, "first_step": 0, "last_step": 0}
                                           for name in names}})
    open_run(page, served, 70, "metrics")
    assert page.inner_text("#run-metrics-count").startswith("48 of 10,000 matching metrics shown")
    assert page.locator(".run-plot").count() == 48
    page.fill("#run-metrics-filter", "layer59/")
    page.wait_for_selector("#run-metrics-count:text-is('1 of 1 matching metrics shown (10,000 in all)')")
    page.wait_for_function("""() => {
        const graph = document.querySelector('.run-plot .js-plotly-plot');
        return graph && graph._fullData && graph._fullData.length === 1 && graph._fullData[0].x.length === 1
            && graph._fullData[0].mode === 'markers';
    }""")  # one point: a marker, not an empty line
    assert page.js_errors == []
