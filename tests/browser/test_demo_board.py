"""README's main command, ``sacred-board --demo``, for real: a subprocess that trains the examples and serves them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.serving import free_port, get, wait_until_serving

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent.parent


def test_demo_board_serves_every_status_and_a_live_run_quietly(page):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "dashboard.cli", "--demo", "--port", str(port)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_serving(url, process, seconds=240)
        assert get(url)[0] == 200
        page.goto(url)
        page.wait_for_selector(".ag-row [col-id=id] a")
        page.wait_for_selector("#runs-count:has-text('10 runs')")
        statuses = page.eval_on_selector_all(".ag-center-cols-container .ag-row [col-id=status]",
                                             "cells => cells.map(c => c.innerText)")
        assert {"COMPLETED", "FAILED", "QUEUED", "INTERRUPTED", "PROBABLY_DEAD", "RUNNING"} <= set(statuses)
        if not os.path.exists("/dev/nvidia0"):  # the GPU column names the simulated GPUs (in the rows the grid
            # holds: its columns are virtualised, one scrolled out of view is not in the page)
            page.wait_for_function("""() => { let found = false;
                dash_ag_grid.getApi('runs-grid').forEachNode(node => {
                    if (node.data && JSON.stringify(node.data).includes('(simulated)')) { found = true; } });
                return found; }""")
        page.click('#runs-status input[value="PROBABLY_DEAD"]')
        page.wait_for_selector("#runs-count:has-text('1 run')")
        time.sleep(0.5)
        assert page.locator(".ag-center-cols-container .ag-row").count() == 1
        process.send_signal(signal.SIGINT)  # Ctrl-C: the live run, still training, ends and the board exits
        output = process.communicate(timeout=60)[0]
        assert process.returncode == 0, output[-3000:]
        populating = output[:output.index("sacred-board on http")].splitlines()
        assert 5 < len(populating) < 25, output[-3000:]  # the demo's own lines; no training lines, no Sacred's
        assert not [line for line in populating if re.search(r"epoch +\d+/|Started run with ID", line)]
        assert "stopping the live run" in output and "ended: INTERRUPTED" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
