"""A run's page (route ``/run/<id>`` and ``/run/<id>/<tab>``, shareable): the header (status, experiment, times,
result) over tabs, as Omniboard, MLflow and W&B organise a run: Overview, Metrics, System, Output, Config, Code &
dependencies, Artifacts, Info (:data:`TABS`). The URL names the tab; a tab is read and built only when opened.

``layout()`` builds the page's frame and reads nothing; :func:`load` fills the header and the tab from one read of
the run's document (``RunStore.run_page``), on page load and again when the run's status changes (a RUNNING run
that ends shows its result and artifacts without a reload). The tabs are built by ``dashboard/run_tabs.py``,
``run_metrics.py`` and ``run_system.py``; the callbacks are the named functions below, registered by
:func:`register`, and their work is done by plain functions (``run_actions.py``) the tests call.
"""

from __future__ import annotations

import logging
from typing import Any

from dash import ALL, MATCH, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dashboard import run_actions as actions
from dashboard import run_artifacts as arts
from dashboard import run_parts as parts
from dashboard import run_tabs as tabs
from dashboard.board import Board, current_board, run_key
from dashboard.run_ids import (
    ARTIFACT_DOWNLOAD,
    ARTIFACT_GET,
    ARTIFACT_MESSAGE,
    ARTIFACT_NAMES,
    ARTIFACT_TOGGLE,
    ARTIFACT_VIEW,
    ARTIFACTS_ZIP,
    CONTENT,
    HEADER,
    LIVE,
    NOTES,
    OUTPUT,
    OUTPUT_CUT,
    OUTPUT_DOWNLOAD,
    OUTPUT_GET,
    OUTPUT_NOTE,
    OUTPUT_SEARCH,
    OUTPUT_SUMMARY,
    OUTPUT_TICK,
    PAGE,
    SAVE,
    SAVED,
    SCROLLED,
    SHOWN_STATUS,
    SOURCE_DOWNLOAD,
    SOURCE_GET,
    SOURCE_PATHS,
    SOURCE_TOGGLE,
    SOURCE_VIEW,
    STATUS,
    TAGS,
    TICK,
    ZIP_DOWNLOAD,
)
from dashboard.run_tabs import TABS
from sacred_gpu.read import NotFound, ReadError

logger = logging.getLogger(__name__)

__all__ = ["TABS", "layout", "load", "register", "render", "tab_of"]


def tab_of(rest: str) -> tuple[str, str]:
    """``(run id, tab)`` of the part of a path after ``/run/``: ``"7"`` -> ("7", "overview"), ``"7/system"`` ->
    ("7", "system"); a last part that names no tab is part of the id."""
    rest = rest.strip("/")
    head, _, last = rest.rpartition("/")
    return (head, last) if head and last in TABS else (rest, "overview")


def layout(board: Board, rest: str) -> html.Div:
    """The page's frame for ``/run/<rest>``: the tabs' links, an empty header and tab, and the stores the callbacks
    read. No database work: :func:`load` fills it."""
    run_id, tab = tab_of(rest)
    key = run_key(run_id)
    return html.Div(className="run-page", children=[
        dcc.Store(id=PAGE, data={"run_id": key, "tab": tab}),
        dcc.Store(id=SHOWN_STATUS),
        dcc.Interval(id=TICK, interval=int(board.refresh * 1000), disabled=True),
        dcc.Link("← All runs", href="/"),
        html.Div(id=HEADER, className="run-header"),
        html.Nav([dcc.Link(label, href=f"/run/{run_id}" + ("" if name == "overview" else f"/{name}"),
                           className="run-tab run-tab-active" if name == tab else "run-tab", id=f"run-tab-{name}")
                  for name, label in TABS.items()], className="run-tabs", role="tablist"),
        html.Div(id=CONTENT, className=f"run-tab-body run-tab-{tab}-body"),
    ])


def render(board: Board, run_id: Any, tab: str, body: bool = True) -> tuple[list[Any], Any, str | None]:
    """``(header, tab body, status as shown)`` of run ``run_id``'s page at ``tab`` (``body=False``: the header
    only, the body ``no_update``), from one read of its document; a clear message (and status None) where there is
    no such run."""
    try:
        page = board.store.run_page(run_id, files=body and tab == "artifacts", metrics=body and tab == "overview")
    except NotFound:
        return ([html.H2("No such run")],
                [html.P(f"There is no run {run_id!s} in this database."), dcc.Link("All runs", href="/")], None)
    status = str(page.row.get("status") or "")
    header = [*parts.header(run_id, page.row, page.doc, STATUS),
              html.P(live_text(board, status, page.doc), id=LIVE, className="live")]
    return header, tabs.build(board, run_id, tab, page) if body else no_update, status


def live_text(board: Board, status: str, doc: dict[str, Any]) -> str:
    """What the header says of a run's liveness (``doc``: its document): refreshed while RUNNING; for a run without
    a recent heartbeat, that its process may be gone (its page still watches for a beat)."""
    if status == "RUNNING":
        return f"live: refreshed every {board.refresh:g} s"
    if status == "PROBABLY_DEAD":
        beat = parts.time_text(doc.get("heartbeat")) or "never"
        return (f"no heartbeat since {beat} (UTC): the run's process has probably died or lost its connection; "
                f"checked every {board.refresh:g} s")
    return ""


# -- callbacks: named functions, registered by register() ------------------------------------------------------------
def load(page: dict[str, Any], _tick: int | None, shown: str | None) -> tuple[Any, Any, Any, bool]:
    """Fill the header and the tab on page load; on a tick, re-read the run's status and fill them again only when
    it changed (the tabs that refresh themselves, metrics, system and output, keep what they show)."""
    board = current_board()
    run_id, tab = page["run_id"], page["tab"]
    ticked = ctx.triggered_id == TICK
    try:
        if ticked:
            status = actions.shown_status(board, run_id)
            if status == shown:
                raise PreventUpdate
        header, body, status = render(board, run_id, tab, body=not (ticked and tab in tabs.SELF_REFRESHING))
    except ReadError as error:
        logger.warning("run %s: not read: %s", run_id, error)
        if ticked:
            raise PreventUpdate from error
        return [html.H2("MongoDB cannot be read")], [html.P(str(error), className="error"),
                                                       html.P("Reload the page to try again.")], None, True
    return header, body, status, not _watched(status)


def _watched(status: str | None) -> bool:
    return status in ("RUNNING", "PROBABLY_DEAD", "QUEUED")


def output_changed(_tick: int | None, query: str | None, page: dict[str, Any]) -> tuple[Any, ...]:
    """The output tab re-read (live) or searched."""
    run_id = page["run_id"]
    try:
        found = actions.refresh_output(current_board(), run_id, query)
    except ReadError as error:
        logger.warning("run %s: output not read: %s", run_id, error)
        return (no_update,) * 4 + (f"not refreshed: {error}",)
    return found["lines"], found["summary"], found["cut"], not found["live"], found["note"]


def save(_clicks: int, tags: str | None, notes: str | None, page: dict[str, Any]) -> str:
    """Save the tags and notes edited on the overview."""
    try:
        return actions.save_tags_notes(current_board(), page["run_id"], tags, notes)
    except ReadError as error:
        return f"not saved: {error}"


def _toggle(view: Any, clicks: int | None, names: list[str], run_id: Any) -> tuple[Any, str]:
    name = names[ctx.triggered_id["index"]]
    if not (clicks or 0) % 2:
        return [], "View"
    try:
        return view(current_board(), run_id, name), "Hide"
    except ReadError as error:
        return [html.P(f"not read: {error}", className="preview-note")], "View"


def toggle_source(clicks: int | None, paths: list[str], page: dict[str, Any]) -> tuple[Any, str]:
    """Open or close a source file's view."""
    return _toggle(actions.source_view, clicks, paths, page["run_id"])


def toggle_artifact(clicks: int | None, names: list[str], page: dict[str, Any]) -> tuple[Any, str]:
    """Open or close an artifact's preview."""
    return _toggle(actions.artifact_view, clicks, names, page["run_id"])


def _clicked() -> int | None:
    """The index of the pattern-matching button that fired, if it was really clicked."""
    if not ctx.triggered or not ctx.triggered[0].get("value") or not isinstance(ctx.triggered_id, dict):
        return None
    return ctx.triggered_id.get("index")


def get_source(_clicks: list, paths: list[str], page: dict[str, Any]) -> Any:
    """Download a source file."""
    index = _clicked()
    if index is None:
        return no_update
    try:
        return actions.download_source(current_board(), page["run_id"], paths[index])
    except ReadError as error:
        logger.warning("run %s: source not read: %s", page["run_id"], error)
        return no_update


def get_artifact(_clicks: list, names: list[str], page: dict[str, Any]) -> tuple[Any, str]:
    """Download an artifact."""
    index = _clicked()
    if index is None:
        return no_update, no_update
    try:
        data, message = actions.download_artifact(current_board(), page["run_id"], names[index])
    except ReadError as error:
        return no_update, f"not read: {error}"
    return data if data is not None else no_update, message


def get_zip(_clicks: int, page: dict[str, Any]) -> tuple[Any, str]:
    """Download every artifact as a zip."""
    try:
        data, message = actions.download_zip(current_board(), page["run_id"])
    except ReadError as error:
        return no_update, f"not read: {error}"
    return data if data is not None else no_update, message


def get_output(_clicks: int, page: dict[str, Any]) -> Any:
    """Download the captured output."""
    try:
        return actions.download_output(current_board(), page["run_id"])
    except ReadError as error:
        logger.warning("run %s: output not read: %s", page["run_id"], error)
        return no_update


#: Keeps the tail of the output in view while output arrives, unless the reader scrolled up or is searching.
_FOLLOW_TAIL = """function(children, query) {
    const el = document.getElementById('OUTPUT_ID');
    if (!el) { return window.dash_clientside.no_update; }
    const atBottom = !el.dataset.seen || el.scrollTop + el.clientHeight >= Number(el.dataset.seen) - 40;
    if (atBottom && !query) { el.scrollTop = el.scrollHeight; }
    el.dataset.seen = el.scrollHeight;
    return window.dash_clientside.no_update;
}""".replace("OUTPUT_ID", OUTPUT)


def register(app: Any) -> None:
    """Register the page's callbacks on ``app``, and ``run_artifacts.STREAM_ROUTE`` on its server."""
    app.server.add_url_rule(arts.STREAM_ROUTE, "run_artifact_stream",
                            lambda run_id, name: arts.stream_artifact(current_board().store, run_key(run_id), name))
    app.callback(Output(HEADER, "children"), Output(CONTENT, "children"), Output(SHOWN_STATUS, "data"),
                 Output(TICK, "disabled"), Input(PAGE, "data"), Input(TICK, "n_intervals"),
                 State(SHOWN_STATUS, "data"))(load)
    app.callback(Output(OUTPUT, "children"), Output(OUTPUT_SUMMARY, "children"), Output(OUTPUT_CUT, "children"),
                 Output(OUTPUT_TICK, "disabled"), Output(OUTPUT_NOTE, "children"),
                 Input(OUTPUT_TICK, "n_intervals"), Input(OUTPUT_SEARCH, "value"), State(PAGE, "data"),
                 prevent_initial_call=True)(output_changed)
    app.clientside_callback(_FOLLOW_TAIL, Output(SCROLLED, "data"), Input(OUTPUT, "children"),
                            State(OUTPUT_SEARCH, "value"))
    app.callback(Output(SAVED, "children"), Input(SAVE, "n_clicks"), State(TAGS, "value"), State(NOTES, "value"),
                 State(PAGE, "data"), prevent_initial_call=True)(save)
    app.callback(Output({"type": SOURCE_VIEW, "index": MATCH}, "children"),
                 Output({"type": SOURCE_TOGGLE, "index": MATCH}, "children"),
                 Input({"type": SOURCE_TOGGLE, "index": MATCH}, "n_clicks"), State(SOURCE_PATHS, "data"),
                 State(PAGE, "data"), prevent_initial_call=True)(toggle_source)
    app.callback(Output({"type": ARTIFACT_VIEW, "index": MATCH}, "children"),
                 Output({"type": ARTIFACT_TOGGLE, "index": MATCH}, "children"),
                 Input({"type": ARTIFACT_TOGGLE, "index": MATCH}, "n_clicks"), State(ARTIFACT_NAMES, "data"),
                 State(PAGE, "data"), prevent_initial_call=True)(toggle_artifact)
    app.callback(Output(SOURCE_DOWNLOAD, "data"), Input({"type": SOURCE_GET, "index": ALL}, "n_clicks"),
                 State(SOURCE_PATHS, "data"), State(PAGE, "data"), prevent_initial_call=True)(get_source)
    app.callback(Output(ARTIFACT_DOWNLOAD, "data"), Output(ARTIFACT_MESSAGE, "children", allow_duplicate=True),
                 Input({"type": ARTIFACT_GET, "index": ALL}, "n_clicks"), State(ARTIFACT_NAMES, "data"),
                 State(PAGE, "data"), prevent_initial_call=True)(get_artifact)
    app.callback(Output(ZIP_DOWNLOAD, "data"), Output(ARTIFACT_MESSAGE, "children", allow_duplicate=True),
                 Input(ARTIFACTS_ZIP, "n_clicks"), State(PAGE, "data"), prevent_initial_call=True)(get_zip)
    app.callback(Output(OUTPUT_DOWNLOAD, "data"), Input(OUTPUT_GET, "n_clicks"), State(PAGE, "data"),
                 prevent_initial_call=True)(get_output)
