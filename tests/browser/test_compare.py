"""Comparing runs in headless Chromium: select runs in the table, open the comparison."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.board_data import RUNS, SCRIPT, gpu_run, record_runs
from tests.support.browser_pages import open_board

pytestmark = pytest.mark.browser


def test_select_three_runs_and_compare_them(page, client, serve):
    served = serve(record_runs(client, RUNS))
    open_board(page, served)
    for run_id in (1, 2, 5):
        page.locator(f'.ag-row[row-id="{run_id}"] .ag-checkbox-input').first.check()
    page.click("#runs-compare")
    page.wait_for_selector(".compare-page h2:has-text('Compare 3 runs')")
    assert sorted(page.url.split("/compare?runs=")[1].split(",")) == ["1", "2", "5"]
    loss = page.locator("#\\{\\\"name\\\"\\:\\\"loss\\\"\\,\\\"type\\\"\\:\\\"compare-metric\\\"\\}")
    loss.locator(".legendtext").first.wait_for()
    legend = loss.locator(".legendtext").evaluate_all("texts => texts.map(t => t.textContent)")
    assert sorted(legend) == ["#1 lr=0.1 note=plain", "#2 lr=0.01 note=plain", f"#5 lr=0.05 note={SCRIPT}"]
    diff = page.inner_text("#compare-config-diff")
    assert "lr" in diff and SCRIPT in diff  # text, not markup
    page.wait_for_selector("#compare-parcoords .parcoords")
    # the x axis switches to wall time for every panel
    page.click("#compare-x input[value='wall']")
    page.wait_for_function("() => document.querySelector('.js-plotly-plot .xtitle')?.textContent.includes('wall')")
    assert page.evaluate("window.__xss") is None
    assert page.js_errors == []


def test_compare_needs_two_runs(page, client, serve):
    served = serve(record_runs(client, RUNS[:2]))
    open_board(page, served)
    page.locator('.ag-row[row-id="1"] .ag-checkbox-input').first.check()
    page.click("#runs-compare")
    page.wait_for_selector("#runs-message:has-text('select two or more runs')")


def legend_of(panel: Any) -> list[str]:
    """The legend entries a panel shows, once it shows one."""
    panel.locator(".legendtext").first.wait_for()
    return panel.locator(".legendtext").evaluate_all("texts => texts.map(t => t.textContent)")


def test_gpus_of_every_run_on_one_overlay_and_a_lone_metric_names_its_run(page, client, serve):
    """GPU utilization and memory: one panel each, a line per run and GPU, x from each run's start; a metric only
    one run logged still has a legend saying which run it is."""
    store = record_runs(client, RUNS[:2])
    gpu_run(client, 0.3, metric="grad_norm")
    gpu_run(client, 0.4)
    served = serve(store)
    page.goto(f"{served.url}/compare?runs=1,2,3,4")
    page.wait_for_selector(".compare-page h2:has-text('Compare 4 runs')")
    lone = page.locator("#\\{\\\"name\\\"\\:\\\"grad_norm\\\"\\,\\\"type\\\"\\:\\\"compare-metric\\\"\\}")
    assert legend_of(lone) == ["#3 lr=0.3 note=gpu"]
    for title in ("GPU utilization", "GPU memory used"):
        overlay = page.locator(f"#compare-gpu div:has(> h4:text-is('{title}'))")
        assert legend_of(overlay) == ["#3 gpu0", "#3 gpu1", "#4 gpu0", "#4 gpu1"]
        assert overlay.locator(".xtitle").text_content() == "time since start (s)"
    assert page.locator("#compare-gpu .js-plotly-plot").count() == 2
    assert "no GPU data for #1, #2" in page.inner_text("#compare-gpu")
    assert page.js_errors == []
