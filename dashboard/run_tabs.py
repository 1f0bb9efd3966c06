"""The tabs of a run's page, each built from the page's view (``RunPage``) when it is opened: :func:`build`.

Overview (tags and notes, fail trace, metric summary, system summary, host and GPUs), Metrics and System (from
``run_metrics.py`` and ``run_system.py``), Output (live while the run runs, ANSI colours, search, the observer's
truncation marker), Config, Code & dependencies (sources, git, packages), Artifacts (bounded previews, downloads,
zip) and Info (Sacred's info and meta, the environment). Data in, components out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import dash_ag_grid as dag
from dash import dcc, html

from dashboard import run_actions as actions
from dashboard import run_artifacts as arts
from dashboard import run_metrics, run_system
from dashboard import run_parts as parts
from dashboard.board import Board
from dashboard.run_ids import (
    ARTIFACT_DOWNLOAD,
    ARTIFACT_GET,
    ARTIFACT_MESSAGE,
    ARTIFACT_NAMES,
    ARTIFACT_TOGGLE,
    ARTIFACT_VIEW,
    ARTIFACTS_ZIP,
    CONFIG,
    FAIL_TRACE,
    INFO,
    METRIC_SUMMARY,
    NOTES,
    OUTPUT,
    OUTPUT_CUT,
    OUTPUT_DOWNLOAD,
    OUTPUT_GET,
    OUTPUT_NOTE,
    OUTPUT_SEARCH,
    OUTPUT_SUMMARY,
    OUTPUT_TICK,
    SAVE,
    SAVED,
    SCROLLED,
    SOURCE_DOWNLOAD,
    SOURCE_GET,
    SOURCE_PATHS,
    SOURCE_TOGGLE,
    SOURCE_VIEW,
    TAGS,
    ZIP_DOWNLOAD,
)
from dashboard.run_output import marker_note, output_lines
from sacred_gpu.read import NotFound, RunPage

logger = logging.getLogger(__name__)

#: The tabs, by the name the URL gives them, with their labels.
TABS = {"overview": "Overview", "metrics": "Metrics", "system": "System", "output": "Output", "config": "Config",
        "code": "Code & dependencies", "artifacts": "Artifacts", "info": "Info"}
#: Tabs that re-read a running run themselves (their page keeps them when the run's status changes).
SELF_REFRESHING = frozenset({"metrics", "system", "output"})
#: Preview bytes a tab's opening reads for artifacts shown open at once; later ones open on a click.
PAGE_PREVIEW_BYTES = 4 * arts.MIB
PAGE_PREVIEWS = 8
#: Rows of the overview's metric summary (a run may log thousands of metrics).
SUMMARY_ROWS = 1_000


def build(board: Board, run_id: Any, tab: str, page: RunPage) -> list[Any]:
    """The body of ``tab`` for run ``run_id``."""
    doc, row = page.doc, page.row
    if tab == "metrics":
        return [run_metrics.layout(board, page.plots)]
    if tab == "system":
        return [run_system.layout(board, page.plots)]
    if tab == "output":
        return _output(board, doc.get("captured_out") or "", str(row.get("status")))
    if tab == "config":
        return [parts.tree_view(doc.get("config"), CONFIG, empty="no config")]
    if tab == "code":
        return [*_sources(board, run_id, doc, page.sources), html.H3("Experiment"),
                *parts.experiment_facts(doc.get("experiment"))]
    if tab == "artifacts":
        return [html.H3(f"Artifacts ({arts.summary(page.files)})"), *_artifacts(board, run_id, page.files)]
    if tab == "info":
        return parts.info_section(doc, INFO)
    return _overview(board, page)


def _overview(board: Board, page: RunPage) -> list[Any]:
    return [
        _tags_notes(board, page.row),
        parts.fail_trace(page.doc, FAIL_TRACE),
        html.H3("Metrics"), _metric_summary(page.metrics),
        html.H3("GPU and system"), *run_system.summary(page.plots),
        html.H3("Host"), *parts.host_section(page.doc.get("host"), environment=False),
    ]


def _metric_summary(rows: list[dict[str, Any]]) -> Any:
    """Last, lowest and highest value (with their steps) of every metric, in a sortable, filterable table."""
    if not rows:
        return html.P("This run logged no metrics.", className="note")
    shown = rows[:SUMMARY_ROWS]
    number = {"type": "numericColumn", "filter": "agNumberColumnFilter",
              "valueFormatter": {"function": "params.value == null ? '' : d3.format('.6~g')(params.value)"}}
    defs = [{"field": "name", "headerName": "metric", "filter": "agTextColumnFilter", "pinned": "left"},
            {"field": "last", **number}, {"field": "min", **number},
            {"field": "min_step", "headerName": "step of min", "type": "numericColumn"},
            {"field": "max", **number},
            {"field": "max_step", "headerName": "step of max", "type": "numericColumn"},
            {"field": "count", "headerName": "points", "type": "numericColumn"}]
    grid = dag.AgGrid(id=METRIC_SUMMARY, rowData=shown, columnDefs=defs,
                      defaultColDef={"sortable": True, "resizable": True, "floatingFilter": len(rows) > 10},
                      columnSize="autoSize", dashGridOptions={"domLayout": "autoHeight" if len(shown) <= 15 else
                                                              "normal", "suppressFieldDotNotation": True},
                      style={"height": None if len(shown) <= 15 else "420px"}, className="ag-theme-alpine")
    note = html.P(f"The first {SUMMARY_ROWS:,} of {len(rows):,} metrics are listed; the Metrics tab finds any "
                  "of them by name.", className="note") if len(rows) > SUMMARY_ROWS else None
    return html.Div([grid, note], className="run-metric-summary")


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
    live = status == "RUNNING" or status == "PROBABLY_DEAD"  # a silent run may beat again
    return [
        html.Div(className="toolbar", children=[
            dcc.Input(id=OUTPUT_SEARCH, type="search", debounce=0.3, placeholder="search the output",
                      className="output-search"),
            html.Span(summary, id=OUTPUT_SUMMARY, className="count"),
            html.Button("Download output", id=OUTPUT_GET), dcc.Download(id=OUTPUT_DOWNLOAD),
            html.Span(id=OUTPUT_NOTE, className="message"),
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
        return [html.H3("Sources"), html.P(html.Em("No source files recorded."))]
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
    return [html.H3("Sources"), dcc.Store(id=SOURCE_PATHS, data=paths), dcc.Download(id=SOURCE_DOWNLOAD), *rows]


def _opened(view: Any, board: Board, run_id: Any, *args: Any) -> list[Any]:
    """A view shown open when its tab opens; a note instead of a failed tab when its file is missing."""
    try:
        return view(board, run_id, *args)
    except NotFound as error:
        logger.warning("run %s: %s", run_id, error)
        return [html.P(f"not read: {error}", className="preview-note")]


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
