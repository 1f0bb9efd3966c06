"""sacred-board served for real: under gunicorn (configured by the environment), and the CLI's messages."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support.serving import free_port, get, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]


def test_gunicorn_serves_the_board_with_auth_from_the_environment():
    port = free_port()
    env = dict(os.environ, SACRED_BOARD_MU="mongodb://127.0.0.1:1/lab", SACRED_BOARD_AUTH="ada:pw")
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"127.0.0.1:{port}",
                                "dashboard.wsgi:server"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_serving(url, process)
        assert get(url)[0] == 401
        status, body = get(url, "ada:pw")
        assert status == 200 and "sacred-board" in body
        assert get(url, "ada:wrong")[0] == 401
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_cli_reports_an_unreachable_database_and_keeps_retrying():
    process = subprocess.Popen([sys.executable, "-m", "dashboard.cli", "-m", "127.0.0.1:1:lab", "--port",
                                str(free_port())], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        time.sleep(0.5)
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("cannot reach MongoDB" in line for line in lines):
            lines.append(process.stdout.readline())
        assert process.poll() is None  # still retrying
    finally:
        process.terminate()
        out = process.communicate(timeout=20)[0]
    text = "".join(lines) + out
    assert "ERROR dashboard: cannot reach MongoDB at 127.0.0.1:1 (database 'lab')" in text
    assert "retrying in 5 s" in text and "Traceback" not in text
