"""A run's page (route ``/run/<id>``, shareable): header with status, tags and notes (editable), plots (from
``dashboard/run_plots.py``), captured output (live while the run runs, ANSI colours, search, the observer's truncation
marker), fail trace, config, artifacts (bounded previews, downloads, zip), sources, experiment, host with GPUs, meta
and info. Sections are built by ``dashboard/run_parts.py``, ``run_output.py`` and ``run_artifacts.py``; the work of
every callback is a plain function below. Everything is read through ``RunStore``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from dash import ALL, MATCH, Input, Output, State, ctx, dcc, html, no_update

from dashboard import run_actions as actions
from dashboard import run_artifacts as arts
from dashboard import run_parts as parts
from dashboard import run_plots
from dashboard.board import Board, run_key
from dashboard.run_output import marker_note, output_lines
from sacred_gpu.read import NotFound, ReadError

logger = logging.getLogger(__name__)

RUN_ID = "run-id"  # dcc.Store: the run's id
STATUS = "run-status"
LIVE = "run-live"
TAGS = "run-tags"
NOTES = "run-notes"
SAVE = "run-save"
SAVED = "run-saved"
PLOTS = "run-plots"
OUTPUT = "run-output"
OUTPUT_SEARCH = "run-output-search"
OUTPUT_SUMMARY = "run-output-summary"
OUTPUT_CUT = "run-output-cut"
OUTPUT_TICK = "run-output-tick"
OUTPUT_GET = "run-output-get"
OUTPUT_DOWNLOAD = "run-output-download"
SCROLLED = "run-output-scrolled"
FAIL_TRACE = "run-fail-trace"
CONFIG = "run-config"
SOURCE_PATHS = "run-source-paths"  # dcc.Store: the sources' paths, by index
SOURCE_VIEW = "run-source-view"  # pattern-matching ids {"type": ..., "index": i} from here
SOURCE_TOGGLE = "run-source-toggle"
SOURCE_GET = "run-source-get"
SOURCE_DOWNLOAD = "run-source-download"
ARTIFACT_NAMES = "run-artifact-names"  # dcc.Store: the artifacts' names, by index
ARTIFACT_VIEW = "run-artifact-view"
ARTIFACT_TOGGLE = "run-artifact-toggle"
ARTIFACT_GET = "run-artifact-get"
ARTIFACT_DOWNLOAD = "run-artifact-download"
ARTIFACTS_ZIP = "run-artifacts-zip"
ZIP_DOWNLOAD = "run-zip-download"
ARTIFACT_MESSAGE = "run-artifact-message"
#: Preview bytes a page load reads for artifacts shown open at once; later ones open on a click.
PAGE_PREVIEW_BYTES = 4 * arts.MIB
PAGE_PREVIEWS = 8


def layout(board: Board, run_id: str) -> html.Div:
    """The run's page, or a clear message when there is no such run."""
    key = run_key(run_id)
    try:
        page = board.store.run_page(key)  # the run's document, read once for the whole page
    except NotFound:
        return html.Div([html.H2("No such run"), html.P(f"There is no run {run_id!s} in this database."),
                         dcc.Link("All runs", href="/")], className="run-page")
    row, doc, files = page.row, page.doc, page.files
    return html.Div(className="run-page", children=[
        dcc.Store(id=RUN_ID, data=key),
        dcc.Link("← All runs", href="/"),
        *parts.header(key, row, doc, STATUS),
        _tags_notes(board, row),
        parts.fail_trace(doc, FAIL_TRACE),
        _section("Metrics and system", [run_plots.layout(board, key, page.plots)], PLOTS),
        _section("Captured output", _output(board, doc.get("captured_out") or "", str(row.get("status")))),
        _section("Config", [parts.tree_view(doc.get("config"), CONFIG, empty="no config")]),
        _section(f"Artifacts ({arts.summary(files)})", _artifacts(board, key, files)),
        _section("Sources", _sources(board, key, doc, page.sources)),
        _section("Experiment", parts.experiment_facts(doc.get("experiment"))),
        _section("Host", parts.host_section(doc.get("host"))),
        _section("Meta", [parts.tree_view(doc.get("meta"), open_depth=1)]),
        _section("Info", [parts.tree_view(doc.get("info"), open_depth=1)]),
    ])


def _section(title: str, children: list[Any], section_id: str | None = None) -> html.Section:
    named = {"id": section_id} if section_id else {}
    return html.Section([html.H3(title), *children], className="run-section", **named)


def _tags_notes(board: Board, row: Mapping[str, Any]) -> html.Div:
    disabled = board.read_only
    tags = row.get("tags") if isinstance(row.get("tags"), list) else []
    notes = row.get("notes") if isinstance(row.get("notes"), str) else ""
    return html.Div(className="run-edit", children=[
        html.Label(["Tags ", dcc.Input(id=TAGS, value=", ".join(tags), disabled=disabled, debounce=False,
                                       placeholder="comma-separated", className="run-tags")]),
        html.Label(["Notes ", dcc.Textarea(id=NOTES, value=notes, disabled=disabled, className="run-notes")]),
        html.Button("Save", id=SAVE, disabled=disabled,
                    title="read-only board" if disabled else "save tags and notes"),
        html.Span(id=SAVED, className="message", role="status"),
    ])


def _output(board: Board, text: str, status: str) -> list[Any]:
    lines, summary = output_lines(text)
    live = status in actions.LIVE_STATUSES
    return [
        html.Div(className="toolbar", children=[
            dcc.Input(id=OUTPUT_SEARCH, type="search", debounce=0.3, placeholder="search the output",
                      className="output-search"),
            html.Span(summary, id=OUTPUT_SUMMARY, className="count"),
            html.Button("Download output", id=OUTPUT_GET), dcc.Download(id=OUTPUT_DOWNLOAD),
            html.Span(f"live: refreshed every {board.refresh:g} s" if live else "", id=LIVE, className="live"),
        ]),
        html.Div(marker_note(text), id=OUTPUT_CUT),
        html.Pre(lines, id=OUTPUT, className="run-output"),
        dcc.Interval(id=OUTPUT_TICK, interval=int(board.refresh * 1000), disabled=not live),
        dcc.Store(id=SCROLLED),
    ]


def _sources(board: Board, run_id: Any, doc: Mapping[str, Any], ids: Mapping[str, Any]) -> list[Any]:
    experiment = doc.get("experiment") or {}
    paths = [str(entry[0]) for entry in experiment.get("sources") or [] if isinstance(entry, (list, tuple)) and entry]
    if not paths:
        return [html.P(html.Em("No source files recorded."))]
    mainfile = experiment.get("mainfile")
    rows = []
    for index, path in enumerate(paths):
        shown = path == mainfile
        rows.append(html.Div(className="file-row", children=[
            html.Button("Hide" if shown else "View", id={"type": SOURCE_TOGGLE, "index": index},
                        n_clicks=1 if shown else 0, className="toggle"),
            html.Span(path, className="file-name"),
            html.Button("Download", id={"type": SOURCE_GET, "index": index}, className="download"),
            html.Div(_opened(actions.source_view, board, run_id, path, ids) if shown else [],
                     id={"type": SOURCE_VIEW, "index": index}, className="file-view"),
        ]))
    return [dcc.Store(id=SOURCE_PATHS, data=paths), dcc.Download(id=SOURCE_DOWNLOAD), *rows]


def _opened(view: Any, board: Board, run_id: Any, *args: Any) -> list[Any]:
    """A view shown open at page load; a note instead of a failed page when its file is missing."""
    try:
        return view(board, run_id, *args)
    except NotFound as error:
        logger.warning("run %s: %s", run_id, _failure(error))
        return [html.P(f"not read: {_failure(error)}", className="preview-note")]


def _artifacts(board: Board, run_id: Any, files: list[dict[str, Any]]) -> list[Any]:
    if not files:
        return [html.P(html.Em("No artifacts."))]
    budget, opened, rows = PAGE_PREVIEW_BYTES, 0, []
    caps = {"image": arts.IMAGE_BYTES, "video": arts.VIDEO_BYTES, "html": arts.HTML_BYTES, "csv": arts.CSV_BYTES}
    for index, info in enumerate(files):
        media = arts.content_type(info["name"], info.get("content_type"))
        cost = min(info.get("length") or 0, caps.get(arts.kind(info["name"], media), arts.TEXT_BYTES))
        shown = opened < PAGE_PREVIEWS and cost <= budget
        if shown:
            budget, opened = budget - cost, opened + 1
        rows.append(html.Div(className="file-row", children=[
            html.Button("Hide" if shown else "View", id={"type": ARTIFACT_TOGGLE, "index": index},
                        n_clicks=1 if shown else 0, className="toggle"),
            html.Span(info["name"], className="file-name"),
            html.Span(f"{media}, {parts.bytes_text(info.get('length'))}", className="file-meta"),
            html.Button("Download", id={"type": ARTIFACT_GET, "index": index}, className="download")
            if (info.get("length") or 0) <= arts.DOWNLOAD_BYTES else
            html.A("Download", href=arts.stream_url(run_id, info["name"]), className="download", download=info["name"]),
            html.Div(_opened(actions.artifact_view, board, run_id, info["name"], info) if shown else [],
                     id={"type": ARTIFACT_VIEW, "index": index}, className="file-view"),
        ]))
    return [dcc.Store(id=ARTIFACT_NAMES, data=[info["name"] for info in files]),
            html.Div([html.Button("Download all (zip)", id=ARTIFACTS_ZIP), dcc.Download(id=ARTIFACT_DOWNLOAD),
                      dcc.Download(id=ZIP_DOWNLOAD), html.Span(id=ARTIFACT_MESSAGE, className="message")],
                     className="toolbar"),
            *rows]


def _clicked(index_key: str) -> int | None:
    """The index of the pattern-matching button that fired, if it was really clicked."""
    if not ctx.triggered or not ctx.triggered[0].get("value") or not isinstance(ctx.triggered_id, Mapping):
        return None
    return ctx.triggered_id.get(index_key)


def _failure(error: Exception) -> str:
    return str(error)


def register(app: Any, board: Board) -> None:
    """Register the page's callbacks on ``app``, and ``run_artifacts.STREAM_ROUTE`` on its server."""
    app.server.add_url_rule(arts.STREAM_ROUTE, "run_artifact_stream",
                            lambda run_id, name: arts.stream_artifact(board.store, run_key(run_id), name))

    @app.callback(Output(OUTPUT, "children"), Output(OUTPUT_SUMMARY, "children"), Output(OUTPUT_CUT, "children"),
                  Output(OUTPUT_TICK, "disabled"), Output(LIVE, "children"), Output(STATUS, "children"),
                  Output(STATUS, "className"),
                  Input(OUTPUT_TICK, "n_intervals"), Input(OUTPUT_SEARCH, "value"), State(RUN_ID, "data"),
                  prevent_initial_call=True)
    def _refresh(_tick: int | None, query: str | None, run_id: Any) -> tuple[Any, ...]:
        try:
            found = actions.refresh_output(board, run_id, query)
        except ReadError as error:
            logger.warning("run %s: output not read: %s", run_id, _failure(error))
            return (no_update,) * 4 + (f"not refreshed: {_failure(error)}", no_update, no_update)
        return (found["lines"], found["summary"], found["cut"], not found["live"], found["live_text"],
                found["status"], found["status_class"])

    # Keep the tail in view while output arrives, unless the reader scrolled up or is searching.
    app.clientside_callback(
        """function(children, query) {
            const el = document.getElementById('OUTPUT_ID');
            if (!el) { return window.dash_clientside.no_update; }
            const atBottom = !el.dataset.seen || el.scrollTop + el.clientHeight >= Number(el.dataset.seen) - 40;
            if (atBottom && !query) { el.scrollTop = el.scrollHeight; }
            el.dataset.seen = el.scrollHeight;
            return window.dash_clientside.no_update;
        }""".replace("OUTPUT_ID", OUTPUT),
        Output(SCROLLED, "data"), Input(OUTPUT, "children"), State(OUTPUT_SEARCH, "value"))

    @app.callback(Output(SAVED, "children"), Input(SAVE, "n_clicks"), State(TAGS, "value"), State(NOTES, "value"),
                  State(RUN_ID, "data"), prevent_initial_call=True)
    def _save(_clicks: int, tags: str | None, notes: str | None, run_id: Any) -> str:
        try:
            return actions.save_tags_notes(board, run_id, tags, notes)
        except ReadError as error:
            return f"not saved: {_failure(error)}"

    def _toggle(view: Any, clicks: int | None, names: list[str], run_id: Any) -> tuple[Any, str]:
        name = names[ctx.triggered_id["index"]]
        if not (clicks or 0) % 2:
            return [], "View"
        try:
            return view(board, run_id, name), "Hide"
        except ReadError as error:
            return [html.P(f"not read: {_failure(error)}", className="preview-note")], "View"

    @app.callback(Output({"type": SOURCE_VIEW, "index": MATCH}, "children"),
                  Output({"type": SOURCE_TOGGLE, "index": MATCH}, "children"),
                  Input({"type": SOURCE_TOGGLE, "index": MATCH}, "n_clicks"), State(SOURCE_PATHS, "data"),
                  State(RUN_ID, "data"), prevent_initial_call=True)
    def _source(clicks: int | None, paths: list[str], run_id: Any) -> tuple[Any, str]:
        return _toggle(actions.source_view, clicks, paths, run_id)

    @app.callback(Output({"type": ARTIFACT_VIEW, "index": MATCH}, "children"),
                  Output({"type": ARTIFACT_TOGGLE, "index": MATCH}, "children"),
                  Input({"type": ARTIFACT_TOGGLE, "index": MATCH}, "n_clicks"), State(ARTIFACT_NAMES, "data"),
                  State(RUN_ID, "data"), prevent_initial_call=True)
    def _artifact(clicks: int | None, names: list[str], run_id: Any) -> tuple[Any, str]:
        return _toggle(actions.artifact_view, clicks, names, run_id)

    @app.callback(Output(SOURCE_DOWNLOAD, "data"), Input({"type": SOURCE_GET, "index": ALL}, "n_clicks"),
                  State(SOURCE_PATHS, "data"), State(RUN_ID, "data"), prevent_initial_call=True)
    def _get_source(_clicks: list, paths: list[str], run_id: Any) -> Any:
        index = _clicked("index")
        if index is None:
            return no_update
        try:
            return actions.download_source(board, run_id, paths[index])
        except ReadError as error:
            logger.warning("run %s: source not read: %s", run_id, _failure(error))
            return no_update

    @app.callback(Output(ARTIFACT_DOWNLOAD, "data"), Output(ARTIFACT_MESSAGE, "children", allow_duplicate=True),
                  Input({"type": ARTIFACT_GET, "index": ALL}, "n_clicks"), State(ARTIFACT_NAMES, "data"),
                  State(RUN_ID, "data"), prevent_initial_call=True)
    def _get_artifact(_clicks: list, names: list[str], run_id: Any) -> tuple[Any, str]:
        index = _clicked("index")
        if index is None:
            return no_update, no_update
        try:
            data, message = actions.download_artifact(board, run_id, names[index])
        except ReadError as error:
            return no_update, f"not read: {_failure(error)}"
        return data if data is not None else no_update, message

    @app.callback(Output(ZIP_DOWNLOAD, "data"), Output(ARTIFACT_MESSAGE, "children", allow_duplicate=True),
                  Input(ARTIFACTS_ZIP, "n_clicks"), State(RUN_ID, "data"), prevent_initial_call=True)
    def _zip(_clicks: int, run_id: Any) -> tuple[Any, str]:
        try:
            data, message = actions.download_zip(board, run_id)
        except ReadError as error:
            return no_update, f"not read: {_failure(error)}"
        return data if data is not None else no_update, message

    @app.callback(Output(OUTPUT_DOWNLOAD, "data"), Input(OUTPUT_GET, "n_clicks"), State(RUN_ID, "data"),
                  prevent_initial_call=True)
    def _get_output(_clicks: int, run_id: Any) -> Any:
        try:
            return actions.download_output(board, run_id)
        except ReadError as error:
            logger.warning("run %s: output not read: %s", run_id, _failure(error))
            return no_update
