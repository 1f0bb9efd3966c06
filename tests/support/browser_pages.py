"""What every browser test does with the board's pages."""

from __future__ import annotations

from typing import Any


def open_board(page: Any, served: Any) -> None:
    page.goto(served.url)
    page.wait_for_selector(".ag-pinned-left-cols-container .ag-row [col-id=id] a")
