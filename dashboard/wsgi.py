"""The board as a WSGI app for gunicorn (several users, several workers)::

    SACRED_BOARD_MU=mongodb://localhost:27017/sacred gunicorn --workers 2 --bind 127.0.0.1:9000 dashboard.wsgi:server

Environment: ``SACRED_BOARD_MU`` (a URI whose path is the database) or ``SACRED_BOARD_MONGO`` (``host:port:db``),
``SACRED_BOARD_READ_ONLY`` (1/true/yes), ``SACRED_BOARD_AUTH`` (``user:password``), ``SACRED_BOARD_REFRESH``
(seconds), ``SACRED_BOARD_PREFIX`` (collection prefix). Nothing connects before the first request.
"""

from __future__ import annotations

import os

from dashboard.app import create_app
from dashboard.board import DEFAULT_REFRESH, Board
from dashboard.cli import parse_auth, target
from sacred_gpu.read import connect

_TRUE = ("1", "true", "yes")


def app_from_environment(environ: os._Environ[str] | dict[str, str] = os.environ):  # noqa: ANN201 - dash.Dash
    """The Dash app configured by the ``SACRED_BOARD_*`` variables."""
    place = target(environ.get("SACRED_BOARD_MONGO"), environ.get("SACRED_BOARD_MU"))
    store = connect(place.url, place.db_name, collection_prefix=environ.get("SACRED_BOARD_PREFIX", ""))
    board = Board(store, read_only=environ.get("SACRED_BOARD_READ_ONLY", "").lower() in _TRUE,
                  refresh=float(environ.get("SACRED_BOARD_REFRESH", DEFAULT_REFRESH)))
    return create_app(board, auth=parse_auth(environ.get("SACRED_BOARD_AUTH")))


app = app_from_environment()
server = app.server
