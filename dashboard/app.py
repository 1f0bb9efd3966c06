"""``create_app(board)``: the Dash app of sacred-board. No database work happens at import."""

from __future__ import annotations

import base64
import hmac
import logging
from typing import Any

import dash
from dash import Input, Output, dcc, html
from flask import Response, request

from dashboard import prometheus_route, run_metrics, run_system, series_csv
from dashboard.board import BOARD_CONFIG, URL, Board, current_board
from dashboard.pages import compare as compare_page
from dashboard.pages import run as run_page
from dashboard.pages import runs as runs_page
from sacred_gpu.read import ReadError, Unavailable

logger = logging.getLogger(__name__)

PAGE = "board-page"


def create_app(board: Board, *, auth: tuple[str, str] | None = None) -> dash.Dash:
    """The board's Dash app on ``board``; ``auth`` = (user, password) asks every request for HTTP basic auth."""
    app = dash.Dash(__name__, title=board.title, suppress_callback_exceptions=True, update_title=None,
                    compress=True)  # gzip: a block of 100 rows is ~60 KB of JSON, ~10 KB compressed
    app.server.config[BOARD_CONFIG] = board
    app.layout = html.Div([
        dcc.Location(id=URL),
        html.Header([dcc.Link(board.title, href="/", className="brand"),
                     html.Span(_database_label(board), className="database"),
                     html.Span("read-only", className="badge") if board.read_only else None]),
        html.Main(id=PAGE),
    ])

    app.callback(Output(PAGE, "children"), Input(URL, "pathname"), Input(URL, "search"))(show_page)
    runs_page.register(app)
    compare_page.register(app)
    run_page.register(app)
    run_metrics.register(app)
    run_system.register(app)
    series_csv.register(app.server)
    prometheus_route.register(app.server)
    if auth:
        _require_basic_auth(app.server, *auth)
    return app


def show_page(pathname: str | None, search: str | None) -> Any:
    """Callback: the page the URL names."""
    return route(current_board(), pathname or "/", search)


def route(board: Board, pathname: str, search: str | None = None) -> Any:
    """The layout of the page at ``pathname`` (``search``: the query string); a message, not a traceback, when
    MongoDB cannot be read."""
    try:
        if pathname in ("/", ""):
            return runs_page.layout(board)
        if pathname.rstrip("/") == "/compare":
            return compare_page.layout(search)
        if pathname.startswith("/run/"):
            return run_page.layout(board, pathname.removeprefix("/run/"))
    except ReadError as error:
        logger.warning("page %s: %s", pathname, error)
        title = "MongoDB is unreachable" if isinstance(error, Unavailable) else "MongoDB cannot be read"
        return html.Div([html.H2(title), html.P(str(error)), html.P("Reload the page to try again.")],
                        className="error")
    return html.Div([html.H2("Not found"), dcc.Link("All runs", href="/")])


def _database_label(board: Board) -> str:
    return f"database {board.store.database.name}"  # the name the store was opened on: no query


def _require_basic_auth(server: Any, user: str, password: str) -> None:
    expected = base64.b64encode(f"{user}:{password}".encode()).decode()

    @server.before_request
    def _check() -> Response | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic ") and hmac.compare_digest(header[6:].strip(), expected):
            return None
        return Response("sacred-board: authentication required\n", 401,
                        {"WWW-Authenticate": 'Basic realm="sacred-board"'})
