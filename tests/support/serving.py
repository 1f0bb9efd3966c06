"""Serving sacred-board for real in tests: a board in a thread of the test (:class:`Served`), a free port, HTTP GETs,
and waiting until a server answers."""

from __future__ import annotations

import base64
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from werkzeug.serving import make_server

from dashboard.app import create_app
from dashboard.board import Board
from sacred_gpu.read.store import RunStore


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str, auth: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_until_serving(url: str, process: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited: {process.stdout.read() if process.stdout else ''}")
        try:
            get(url)
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail("server did not start")


class Served:
    """A board served in a background thread of the test: its ``url``, ``board`` and ``store``; :meth:`close` stops
    it."""

    def __init__(self, board: Board, auth: tuple[str, str] | None = None) -> None:
        self.board = board
        self.store: RunStore = board.store
        app = create_app(board, auth=auth)
        port = free_port()
        self.server = make_server("127.0.0.1", port, app.server, threaded=True)
        self.url = f"http://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
