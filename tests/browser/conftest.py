"""Browser tests: the board served on a free local port, driven by Playwright in Debian's headless Chromium.

Chromium comes from Debian's ``chromium`` package (``.ci/run`` installs it); Playwright's own browser download is
never used. Without Chromium these tests are skipped with the reason, unless ``SACRED_GPU_REQUIRE_BROWSER=1``
(set by CI) makes that a failure.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import mongomock
import pytest

from dashboard.board import Board
from sacred_gpu import connection
from sacred_gpu.read.store import RunStore, connect
from tests.support.serving import Served

logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        if os.environ.get("SACRED_GPU_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium not found (apt-get install chromium chromium-driver)")
        pytest.skip("Chromium not found: apt-get install chromium chromium-driver")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1600, "height": 900})
    context.set_default_timeout(30_000)  # generous: CI machines are shared
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.js_errors = errors
    yield page
    context.close()


@pytest.fixture()
def serve() -> Iterator[Any]:
    """``serve(store, **board_options)`` serves a board and stops it after the test."""
    served: list[Served] = []

    def start(store: RunStore, auth: tuple[str, str] | None = None, **options: Any) -> Served:
        served.append(Served(Board(store, **options), auth=auth))
        return served[-1]

    yield start
    for item in served:
        item.close()


@pytest.fixture()
def fresh_store() -> RunStore:
    return connect(client=connection.open_client(client=mongomock.MongoClient()))


@pytest.fixture(scope="session")
def download_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        yield folder
