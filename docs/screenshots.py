"""Screenshots of sacred-board on its demo, at 1440x900, into ``docs/screenshots/`` (README links them).

    python docs/screenshots.py [--out docs/screenshots]

Starts the demo database (the examples trained through the real observer on simulated GPUs) and a board on a free
local port, then drives Debian's headless Chromium with Playwright: the runs table, every tab of a completed run with
GPUs, the live run's System tab, and a comparison of the learning-rate sweep. Each picture is taken once what it
shows has loaded (its plots drawn), never after a fixed sleep.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import socket
import threading
from pathlib import Path

from werkzeug.serving import make_server

from dashboard.app import create_app
from dashboard.board import Board
from dashboard.cli import DEMO_DEAD_AFTER
from dashboard.demo import start_demo
from dashboard.run_tabs import TABS

logger = logging.getLogger("screenshots")
SIZE = {"width": 1440, "height": 900}
#: What each picture waits for before it is taken.
READY = {"overview": "#run-tags", "metrics": ".run-plot .js-plotly-plot .scatterlayer",
         "system": ".run-system .js-plotly-plot .scatterlayer", "output": "#run-output .out-line",
         "config": "#run-config", "code": ".source-code", "artifacts": "#run-artifacts-zip, .run-tab-body em",
         "info": "#run-info"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "screenshots")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    args.out.mkdir(parents=True, exist_ok=True)
    demo = start_demo(dead_after=DEMO_DEAD_AFTER)  # as sacred-board --demo: its killed run is PROBABLY_DEAD
    try:
        board = Board(demo.store, refresh=2.0)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = make_server("127.0.0.1", port, create_app(board).server, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        shoot(f"http://127.0.0.1:{port}", demo.store, args.out)
        server.shutdown()
    finally:
        demo.close()


def shoot(url: str, store: object, out: Path) -> None:
    """Take every picture of the board served at ``url``."""
    from playwright.sync_api import sync_playwright

    runs = store.runs()  # type: ignore[attr-defined]
    done = runs[(runs["status"] == "COMPLETED") & (runs["experiment"] == "train_digits")]
    run_id = done.index[0]
    sweep = list(done.index[:3])
    live = runs[runs["status"] == "RUNNING"].index
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport=SIZE)
        page.goto(url)
        page.wait_for_selector(".ag-pinned-left-cols-container .ag-row [col-id=id] a")
        page.screenshot(path=str(out / "runs-table.png"))
        for tab in TABS:
            page.goto(f"{url}/run/{run_id}" + ("" if tab == "overview" else f"/{tab}"))
            page.wait_for_selector(READY[tab])
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(out / f"run-{tab}.png"))
        if len(live):
            page.goto(f"{url}/run/{live[0]}/system")
            page.wait_for_selector(READY["system"])
            page.screenshot(path=str(out / "run-live-system.png"))
        page.goto(f"{url}/compare?runs={','.join(str(i) for i in sweep)}")
        page.wait_for_selector(".compare-page .js-plotly-plot .scatterlayer")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(out / "compare.png"))
        browser.close()
    logger.info("screenshots in %s", out)


if __name__ == "__main__":
    main()
