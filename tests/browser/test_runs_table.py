"""A person's path through the runs table, in headless Chromium."""

from __future__ import annotations

import csv
import datetime
import io
import time
from pathlib import Path
from typing import Any

import pytest

from sacred_gpu import GpuMongoObserver
from sacred_gpu.testing.fake_nvml import FakeNvml
from tests.support.board_data import HOSTILE, RUNS, SCRIPT, record_runs
from tests.support.browser_pages import open_board
from tests.support.experiments import run_experiment

pytestmark = pytest.mark.browser


def shown_ids(page: Any) -> list[int]:
    """Run ids in the grid's display order."""
    cells = page.eval_on_selector_all(
        ".ag-pinned-left-cols-container .ag-row",
        "rows => rows.map(r => [Number(r.getAttribute('row-index')), r.querySelector('[col-id=id]')?.innerText])")
    return [int(text) for _, text in sorted(cells) if text]


def wait_for_ids(page: Any, expected: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while shown_ids(page) != expected:
        if time.monotonic() > deadline:
            assert shown_ids(page) == expected
        time.sleep(0.1)


def drag_edge(page: Any, column: str, by: float) -> int:
    """Drag ``column``'s right edge ``by`` pixels with the mouse, as a person widens a column; its new width."""
    page.locator(f'.ag-header-cell[col-id="{column}"]').hover()
    box = page.locator(f'.ag-header-cell[col-id="{column}"] .ag-header-cell-resize').bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    before = page.evaluate(f"dash_ag_grid.getApi('runs-grid').getColumn('{column}').getActualWidth()")
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + by, y, steps=10)
    page.mouse.up()
    after = page.evaluate(f"dash_ag_grid.getApi('runs-grid').getColumn('{column}').getActualWidth()")
    assert after > before
    return after


def cell(page: Any, run_id: int, column: str) -> Any:
    return page.locator(f'.ag-row[row-id="{run_id}"] [col-id="{column}"]').first


def choose(page: Any, dropdown: str, option: str) -> None:
    """Pick ``option`` from a Dash dropdown the way a person does: open it, search, click the option."""
    page.click(dropdown)
    page.locator(".dash-dropdown-search").last.fill(option)
    page.locator(".dash-dropdown-option", has_text=option).first.click()
    page.wait_for_selector(f"{dropdown} .dash-dropdown-value:has-text('{option}')")


def filter_by(page: Any, text: str) -> None:
    query = page.locator("#runs-query")
    query.fill(text)
    query.press("Enter")


@pytest.fixture
def served(client: Any, serve: Any) -> Any:
    return serve(record_runs(client, RUNS), refresh=1.0)


def test_open_sort_and_filter_by_config_and_metric_rollup(page, served):
    open_board(page, served)
    wait_for_ids(page, [5, 4, 3, 2, 1])
    assert page.inner_text("#runs-count") == "5 runs"
    assert "FAILED" in cell(page, 4, "status").inner_text()
    page.click('.ag-header-cell[col-id="config.lr"] .ag-header-cell-label')
    wait_for_ids(page, [3, 2, 5, 1, 4])  # lr 0.001, 0.01, 0.05, 0.1, 0.5
    filter_by(page, "config.lr >= 0.01 and config.lr < 0.5")
    wait_for_ids(page, [2, 5, 1])
    assert page.inner_text("#runs-count") == "3 runs"
    # a metric roll-up column, added from the columns panel, then filtered on
    page.click("#runs-columns-toggle")
    choose(page, "#runs-metric-name", "loss")
    page.click("#runs-add-metric")
    page.wait_for_selector('.ag-header-cell[col-id="loss.min"]')
    assert cell(page, 2, "loss.min").inner_text() == "0.2"
    filter_by(page, "loss.min < 0.3")
    wait_for_ids(page, [2, 5])  # the sort by lr still holds
    page.click('#runs-status input[value="FAILED"]')
    filter_by(page, "")
    wait_for_ids(page, [4])
    filter_by(page, "config.lr <")
    page.wait_for_selector("#runs-query-error:has-text('position')")
    assert page.js_errors == []


def test_tag_is_saved_and_kept_after_reload_and_layout_is_shared(page, browser, served):
    open_board(page, served)
    cell(page, 2, "tags").dblclick()
    editor = page.locator(".ag-cell-inline-editing input, .ag-popup-editor textarea").first
    editor.fill("baseline, sweep")
    editor.press("Enter")
    page.wait_for_selector("#runs-message:has-text('saved tags of run 2')")
    assert served.store.run(2)["omniboard"]["tags"] == ["baseline", "sweep"]
    time.sleep(2.5)  # two refreshes of the rows (every 1 s here) leave the message in place
    assert "saved tags of run 2" in page.inner_text("#runs-message")
    # hide a column from the panel: every browser sees the layout, after a reload too
    page.click("#runs-columns-toggle")
    page.locator(".visible-columns label", has_text="Host").locator("input").uncheck()
    page.wait_for_selector('.ag-header-cell[col-id="host"]', state="detached")
    # widen a column by dragging its edge, and move one (what dragging its header does): saved for everyone. The
    # drag comes first: a move animates the headers, and an edge found mid-animation is missed
    widened = drag_edge(page, "notes", 150)
    page.evaluate("dash_ag_grid.getApi('runs-grid').moveColumns(['result'], 2)")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        layout = {item["colId"]: item for item in served.store.board_settings().layout}
        order = [item["colId"] for item in served.store.board_settings().layout]
        if layout.get("notes", {}).get("width") == widened and order.index("result") < order.index("experiment"):
            break
        time.sleep(0.2)
    assert layout["notes"]["width"] == widened and order.index("result") < order.index("experiment")
    assert layout["status"]["width"] is None  # fitted to its content, not sized by the person
    assert page.evaluate("dash_ag_grid.getApi('runs-grid').getColumn('notes').getActualWidth()") == widened
    other = browser.new_page()
    other.goto(served.url)
    other.wait_for_selector(".ag-row[row-id='2'] [col-id=tags]")
    assert other.locator('.ag-row[row-id="2"] [col-id="tags"]').first.inner_text() == "baseline, sweep"
    assert other.locator('.ag-header-cell[col-id="host"]').count() == 0
    assert other.locator('.ag-header-cell[col-id="status"]').count() == 1
    headers = other.eval_on_selector_all(".ag-header-cell[col-id]", "cells => cells.map(c => c.getAttribute('col-id'))")
    assert headers.index("result") < headers.index("experiment")
    assert other.locator('.ag-header-cell[col-id="notes"]').bounding_box()["width"] == widened
    other.close()


def test_delete_a_run_with_confirmation(page, served):
    open_board(page, served)
    page.locator('.ag-row[row-id="3"] .ag-selection-checkbox input, '
                 '.ag-row[row-id="3"] .ag-checkbox-input').first.check()
    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    page.click("#runs-delete")
    page.wait_for_selector("#runs-message:has-text('deleted 1 run: 3')")
    wait_for_ids(page, [5, 4, 2, 1])
    assert "Delete 1 run(s) (3)" in dialogs[0]
    with pytest.raises(KeyError):
        served.store.run(3)


def test_export_csv_of_the_current_view(page, served):
    open_board(page, served)
    filter_by(page, "status == COMPLETED and config.lr < 0.06")
    wait_for_ids(page, [5, 3, 2])
    with page.expect_download() as download:
        page.click("#runs-export")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    table = list(csv.DictReader(io.StringIO(text)))
    assert [row["id"] for row in table] == ["5", "3", "2"]
    assert {"status", "config.lr", "experiment"} <= set(table[0])
    assert table[0]["experiment"] == HOSTILE  # data, exported as it is


def test_new_runs_appear_live_and_running_rows_update(page, client, served):
    open_board(page, served)
    page.click('.ag-header-cell[col-id="config.lr"] .ag-header-cell-label')
    wait_for_ids(page, [3, 2, 5, 1, 4])

    def main(_run: Any, lr: float) -> None:
        _run.log_scalar("loss", 0.1, 0)

    run_experiment(main, GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False),
                   config={"lr": 0.02, "note": "new"})
    wait_for_ids(page, [3, 2, 6, 5, 1, 4])  # the refresh kept the sort by lr


def test_hostile_strings_render_as_text(page, served):
    served.store.set_tags(1, [HOSTILE, SCRIPT])
    served.store.set_notes(1, SCRIPT + HOSTILE)
    open_board(page, served)
    assert cell(page, 5, "experiment").inner_text() == HOSTILE
    assert cell(page, 5, "config.note").inner_text() == SCRIPT
    assert cell(page, 1, "tags").inner_text() == f"{HOSTILE}, {SCRIPT}"
    assert cell(page, 1, "notes").inner_text() == SCRIPT + HOSTILE
    assert page.locator(".ag-root img").count() == 0
    page.goto(served.url + "/run/5/config")  # the run page's Config tab
    page.wait_for_selector("#run-config")
    assert SCRIPT in page.inner_text("#run-config")
    assert page.evaluate("window.__xss") is None
    assert page.js_errors == []


def test_read_only_board_offers_no_edits(page, client, serve):
    served = serve(record_runs(client, RUNS[:2]), read_only=True)
    open_board(page, served)
    assert page.locator("#runs-delete").is_disabled()
    cell(page, 1, "tags").dblclick()
    assert page.locator(".ag-cell-inline-editing").count() == 0
    assert page.locator("header .badge").inner_text() == "read-only"


def test_clicking_a_run_opens_its_page(page, served):
    open_board(page, served)
    page.click('.ag-row[row-id="4"] [col-id="id"] a')
    page.wait_for_selector("#run-tags")  # the run page opens on its Overview tab
    assert page.url.endswith("/run/4")
    assert page.inner_text("#run-status") == "FAILED"
    page.click(".run-tabs a:text-is('Config')")
    assert '"lr": 0.5' in page.locator("#run-config").inner_text()
    page.click("text=All runs")
    page.wait_for_selector(".ag-row [col-id=id] a")


def cut_cells(page: Any) -> list[str]:
    """Cells and headers whose text the grid cuts (wider than their column), as ``col-id: text``."""
    return page.evaluate("""() => {
        const cut = [];
        document.querySelectorAll('.ag-center-cols-container .ag-cell, .ag-pinned-left-cols-container .ag-cell')
            .forEach(c => { if (c.scrollWidth > c.clientWidth) cut.push(c.getAttribute('col-id') + ': ' + c.innerText); });
        document.querySelectorAll('.ag-header-cell[col-id] .ag-header-cell-text').forEach(t => {
            const cell = t.closest('.ag-header-cell'), line = parseFloat(getComputedStyle(t).lineHeight);
            if (t.scrollWidth > t.clientWidth || t.getBoundingClientRect().height > 1.5 * line)
                cut.push(cell.getAttribute('col-id') + ': ' + t.innerText);
        });
        return cut;
    }""")


def test_columns_fit_their_content_and_headers(page, served):
    """Issue 15, item 4: PROBABLY_DEAD, a long GPU model and long headers are shown whole."""
    hour_ago = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(hours=1)
    served.store.database.runs.update_one({"_id": 1}, {"$set": {"status": "RUNNING", "heartbeat": hour_ago}})
    served.store.database.runs.update_one({"_id": 2}, {"$set": {"system.gpu_model": "NVIDIA H100 80GB HBM3 (simulated)",
                                                               "system.gpu_count": 2}})
    open_board(page, served)
    page.wait_for_selector('.ag-row[row-id="1"] [col-id="status"]:has-text("PROBABLY_DEAD")')
    page.wait_for_function("() => { const c = document.querySelector('.ag-row[row-id=\"2\"] [col-id=gpu]');"
                           " return c && c.innerText.length > 0 && c.scrollWidth <= c.clientWidth; }")
    assert cut_cells(page) == []
    assert cell(page, 2, "gpu").inner_text() == "2x NVIDIA H100 80GB HBM3 (simulated)"


def test_export_right_after_hiding_a_column_and_values_as_shown(page, served):
    """Issue 15, item 3: a column hidden a moment ago is not exported; tags are text; notes are never formulas."""
    served.store.set_tags(4, ["diverged"])
    served.store.set_notes(2, "=1+2")
    open_board(page, served)
    page.click("#runs-columns-toggle")
    page.locator(".visible-columns label", has_text="Host").locator("input").uncheck()
    with page.expect_download() as download:
        page.click("#runs-export")
    table = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert "host" not in table[0] and "experiment" in table[0]
    by_id = {row["id"]: row for row in table}
    assert by_id["4"]["tags"] == "diverged" and by_id["2"]["notes"] == "'=1+2"


def test_running_quick_filter_leaves_out_a_probably_dead_run(page, served):
    """Issue 15, item 9."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    served.store.database.runs.update_one({"_id": 1}, {"$set": {"status": "RUNNING",
                                                               "heartbeat": now - datetime.timedelta(hours=1)}})
    served.store.database.runs.update_one({"_id": 2}, {"$set": {"status": "RUNNING", "heartbeat": now}})
    open_board(page, served)
    page.click('#runs-status input[value="RUNNING"]')
    wait_for_ids(page, [2])
    page.click('#runs-status input[value="PROBABLY_DEAD"]')
    wait_for_ids(page, [1])
    assert "PROBABLY_DEAD" in cell(page, 1, "status").inner_text()


def test_misspelled_metric_says_so_and_a_custom_config_column_shows(page, served):
    """Issue 15, items 10 and 11."""
    open_board(page, served)
    filter_by(page, 'experiment matches "(.*.*)*#"')
    page.wait_for_selector("#runs-query-error:has-text('catastrophic backtracking')")
    assert "quantifier inside a repeated group" in page.inner_text("#runs-query-error")
    filter_by(page, "los.min < 0.2")
    page.wait_for_selector("#runs-rows-status:has-text(\"did you mean 'loss'\")")
    assert "unknown metric 'los'" in page.inner_text("#runs-rows-status")
    assert page.inner_text("#runs-count") == "0 runs"
    filter_by(page, "")
    wait_for_ids(page, [5, 4, 3, 2, 1])
    assert page.inner_text("#runs-rows-status") == ""
    page.click("#runs-columns-toggle")
    page.fill("#runs-custom-path", "config.lr")
    page.click("#runs-add-custom")
    page.wait_for_selector("#runs-message:has-text('added column config.lr')")
    wait_for_ids(page, [5, 4, 3, 2, 1])
    assert cell(page, 2, "config.lr").inner_text() == "0.01"
    assert page.inner_text("#runs-rows-status") == ""


def test_query_box_completes_fields_config_keys_metrics_and_statuses(page, served):
    open_board(page, served)
    page.wait_for_function("() => window.runsTable && window.runsTable.suggestions('config.l').length > 0")
    query = page.locator("#runs-query")

    def offered() -> list[str]:
        return page.eval_on_selector_all("#runs-query-suggestions option", "options => options.map(o => o.value)")

    query.fill("config.l")
    assert offered() == ["config.lr"]
    query.fill("config.lr < 0.1 and lo")
    assert offered() == [f"config.lr < 0.1 and loss.{rollup}" for rollup in ("min", "max", "mean", "last", "first")]
    query.fill("status == comp")
    assert offered() == ["status == COMPLETED"]
    query.fill("config.lr < 0.1 and ")
    assert offered() == []


def header_ids(page: Any) -> list[str]:
    """Column ids of the headers from left to right, as a person sees them (the DOM order may differ)."""
    return page.eval_on_selector_all(
        ".ag-header-cell[col-id]", "cells => cells.map(c => [c.getBoundingClientRect().left, c.getAttribute('col-id')])"
                                   ".sort((a, b) => a[0] - b[0]).map(pair => pair[1])")


def test_columns_drawer_hides_and_shows_a_column_in_its_place(page, served):
    open_board(page, served)
    page.evaluate("dash_ag_grid.getApi('runs-grid').moveColumns(['host'], 2)")  # dragged next to the id
    page.wait_for_function("() => dash_ag_grid.getApi('runs-grid').getColumnState()[2].colId === 'host'")
    page.click("#runs-columns-toggle")
    page.wait_for_selector("#runs-columns-drawer", state="visible")  # opened by a client-side callback
    page.wait_for_selector(".visible-columns label:nth-child(2):has-text('Host')")  # the chooser follows the grid
    before = header_ids(page)
    host = page.locator(".visible-columns label", has_text="Host").locator("input")
    host.uncheck()
    page.wait_for_selector('.ag-header-cell[col-id="host"]', state="detached")
    host.check()
    page.wait_for_selector('.ag-header-cell[col-id="host"]')
    assert header_ids(page) == before
    page.click("#runs-columns-toggle")
    page.wait_for_selector("#runs-columns-drawer", state="hidden")


def group_rows(page: Any) -> list[dict[str, str]]:
    """The group view's rows in display order, each as {column id: text shown}."""
    return page.evaluate(
        """() => [...document.querySelectorAll('#runs-group-grid .ag-center-cols-container .ag-row')]
             .sort((a, b) => Number(a.getAttribute('row-index')) - Number(b.getAttribute('row-index')))
             .map(row => Object.fromEntries([...row.querySelectorAll('[col-id]')]
                                            .map(c => [c.getAttribute('col-id'), c.innerText])))""")


def wait_for_groups(page: Any, expected: list[dict[str, str]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (shown := [{key: row.get(key) for key in expected[0]} for row in group_rows(page)]) != expected:
        if time.monotonic() > deadline:
            assert shown == expected
        time.sleep(0.1)


def test_group_by_a_config_key_shows_each_groups_spread_under_the_filter(page, served):
    """Issue 15: W&B's group by: a row per value of the key, its runs, the mean and spread of a roll-up."""
    open_board(page, served)
    wait_for_ids(page, [5, 4, 3, 2, 1])
    assert page.locator("#runs-groups").is_hidden()
    choose(page, "#runs-group-key", "experiment")
    choose(page, "#runs-group-metric", "loss")
    page.wait_for_selector("#runs-groups", state="visible")
    # loss.min: mnist runs 1, 2 and the failed 4 (0.4, 0.2, 0.9); cifar 0.6; the hostile name (as text) 0.25
    wait_for_groups(page, [{"value": HOSTILE, "runs": "1", "mean": "0.25", "std": ""},
                           {"value": "cifar", "runs": "1", "mean": "0.6", "std": ""},
                           {"value": "mnist", "runs": "3", "mean": "0.5", "std": "0.36056"}])
    assert group_rows(page)[2]["min"] == "0.2" and group_rows(page)[2]["max"] == "0.9"
    assert page.evaluate("window.__xss") is None
    page.click('#runs-status input[value="COMPLETED"]')  # the table's filter applies to the groups
    wait_for_groups(page, [{"value": HOSTILE, "runs": "1", "mean": "0.25"}, {"value": "cifar", "runs": "1", "mean": "0.6"},
                           {"value": "mnist", "runs": "2", "mean": "0.3"}])
    choose(page, "#runs-group-key", "lr")
    wait_for_groups(page, [{"value": "0.001", "runs": "1"}, {"value": "0.01", "runs": "1"},
                           {"value": "0.05", "runs": "1"}, {"value": "0.1", "runs": "1"}])


def test_sparkline_column_draws_each_runs_history(page, served):
    """Issue 15: a sparkline of a chosen metric per row, an inline SVG path (no plot per cell)."""
    open_board(page, served)
    wait_for_ids(page, [5, 4, 3, 2, 1])
    page.click("#runs-columns-toggle")
    choose(page, "#runs-spark-metric", "loss")
    page.click("#runs-add-spark")
    line = page.locator('.ag-row[row-id="1"] [col-id="sparkline:loss"] svg.sparkline path')
    line.wait_for()
    commands = [part for part in line.get_attribute("d").split(" ") if part[0] in "ML"]
    assert len(commands) == 3  # run 1 logged loss 0.9, 0.5, 0.4 at steps 0, 1, 2
    ys = [float(y) for y in line.get_attribute("d").replace("M", "").replace("L", "").split(" ")[1::2]]
    assert ys[0] < ys[1] < ys[2]  # falling loss: the line goes down (SVG's y grows downwards)
    title = page.locator('.ag-row[row-id="4"] [col-id="sparkline:loss"] svg title').text_content()
    assert title == "2 points: last 2.000 at step 1, min 0.9000, max 2.000"
    assert page.locator(".plotly, .js-plotly-plot").count() == 0
    page.reload()  # saved for every browser
    page.locator('.ag-row[row-id="2"] [col-id="sparkline:loss"] svg.sparkline path').wait_for()
