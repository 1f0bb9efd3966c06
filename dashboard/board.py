"""What every page of the board shares: the store it reads through and the board's options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import flask

from sacred_gpu.read import RunStore

#: The app's ``dcc.Location``: pages navigate by setting its ``href``.
URL = "board-url"
#: Key of the app server's ``config`` that holds its :class:`Board` (see :func:`current_board`).
BOARD_CONFIG = "SACRED_BOARD"
#: Seconds between refreshes of the runs table (new runs, running rows).
DEFAULT_REFRESH = 10.0


@dataclass(frozen=True)
class Board:
    """One board: ``store`` for every read and edit; ``read_only`` refuses every edit; ``refresh`` in seconds."""

    store: RunStore
    read_only: bool = False
    refresh: float = DEFAULT_REFRESH
    title: str = "sacred-board"


def run_key(run_id: str) -> Any:
    """The run id of a URL or query string: an int when it is one that MongoDB can hold (Sacred's ids: 64 bits),
    else the string (which names no run of Sacred's)."""
    if run_id.lstrip("-").isdigit() and -2**63 <= int(run_id) < 2**63:
        return int(run_id)
    return run_id


def current_board() -> Board:
    """The board of the app serving the current request: callbacks are named module-level functions registered on
    each app (``register(app)``), and read the board they serve from Flask's app context."""
    return flask.current_app.config[BOARD_CONFIG]
