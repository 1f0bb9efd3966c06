"""The runs table (route ``/``): paged, sorted and filtered in the database through the store.

The grid uses AG Grid's infinite row model: it asks for blocks of rows (``getRowsRequest``) as the user scrolls, and
:func:`page_rows` answers each from one store query. Layout, metric columns and custom columns are saved per database.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import dash_ag_grid as dag
from dash import Input, Output, State, ctx, dcc, html, no_update

from dashboard import columns as cols
from dashboard.board import URL, Board
from dashboard.pages.compare import MAX_RUNS, compare_url
from dashboard.runs_actions import BLOCK, check_filter, csv_export, delete_selected, page_rows, save_edits
from sacred_gpu.read import ROLLUPS, BadQuery, BoardSettings, CustomColumn, MetricColumn, ReadError

logger = logging.getLogger(__name__)

GRID = "runs-grid"
QUERY = "runs-query"
STATUS = "runs-status"
QUERY_ERROR = "runs-query-error"
FILTER = "runs-filter"  # dcc.Store: the filter in force
SPEC = "runs-spec"  # dcc.Store: metric and custom columns, for rows requests
RELOAD = "runs-reload"  # dcc.Store: bumped to reload the table from its first row
TICK = "runs-tick"
PURGED = "runs-purged"  # dcc.Store outputs of the client-side callbacks that drive the grid
REFRESHED = "runs-refreshed"
MESSAGE = "runs-message"  # what the user's last action did (saved, deleted, ...)
ROWS_STATUS = "runs-rows-status"  # why rows cannot be read now (MongoDB unreachable, a bad sort), else empty
COUNT = "runs-count"
METRIC_NAME = "runs-metric-name"
METRIC_ROLLUP = "runs-metric-rollup"
ADD_METRIC = "runs-add-metric"
CUSTOM_PATH = "runs-custom-path"
ADD_CUSTOM = "runs-add-custom"
EXTRA = "runs-extra-columns"
VISIBLE = "runs-visible-columns"
DELETE = "runs-delete"
COMPARE = "runs-compare"
CONFIRM = "runs-confirm-delete"
EXPORT = "runs-export"
DOWNLOAD = "runs-download"


def layout(board: Board) -> html.Div:
    """The page, built with the settings saved in the database at the time of each page load."""
    settings = board.store.board_settings()
    defs = cols.column_defs(board.store.config_keys(), settings, read_only=board.read_only)
    grid = dag.AgGrid(
        id=GRID, rowModelType="infinite", columnDefs=defs, getRowId="params.data.id.toString()",
        defaultColDef={"resizable": True, "sortable": True, "filter": False, "suppressHeaderMenuButton": True},
        dashGridOptions={"cacheBlockSize": BLOCK, "maxBlocksInCache": 50, "infiniteInitialRowCount": 1,
                         "rowSelection": {"mode": "multiRow", "headerCheckbox": False},
                         "selectionColumnDef": {"pinned": "left", "width": 50}, "suppressFieldDotNotation": True,
                         "tooltipShowDelay": 300, "maintainColumnOrder": True, "enableCellTextSelection": True,
                         "stopEditingWhenCellsLoseFocus": True, "suppressColumnVirtualisation": True},
        style={"height": "calc(100vh - 190px)", "width": "100%"}, className="ag-theme-quartz",
    )
    toolbar = html.Div(className="toolbar", children=[
        dcc.RadioItems(id=STATUS, className="status-filter", inline=True, value="",
                       options=[{"label": "All", "value": ""}] + [{"label": s, "value": s} for s in cols.STATUSES]),
        dcc.Input(id=QUERY, type="text", debounce=True, className="query",
                  placeholder='filter: status == COMPLETED and config.lr < 0.01 and tags contains "baseline" '
                              "and val_loss.min < 0.3"),
        html.Span(id=QUERY_ERROR, className="query-error"),
    ])
    actions = html.Div(className="toolbar", children=[
        html.Span(id=COUNT, className="count"),
        html.Button("Compare selected", id=COMPARE, title=f"open the selected runs (up to {MAX_RUNS}) side by side"),
        html.Button("Export CSV", id=EXPORT), dcc.Download(id=DOWNLOAD),
        html.Button("Delete selected", id=DELETE, disabled=board.read_only,
                    title="read-only board" if board.read_only else "delete the selected runs"),
        dcc.ConfirmDialog(id=CONFIRM),
        _columns_panel(board, settings, defs),
        html.Span(id=MESSAGE, className="message", role="status"),
        html.Span(id=ROWS_STATUS, className="message", role="status"),
    ])
    return html.Div([
        toolbar, actions, grid,
        dcc.Store(id=FILTER, data=""), dcc.Store(id=SPEC, data=cols.spec(settings)), dcc.Store(id=RELOAD, data=0),
        dcc.Store(id=PURGED), dcc.Store(id=REFRESHED), dcc.Interval(id=TICK, interval=int(board.refresh * 1000)),
    ])


def _columns_panel(board: Board, settings: BoardSettings, defs: list[dict]) -> html.Details:
    disabled = board.read_only
    return html.Details(className="columns-panel", children=[
        html.Summary("Columns"),
        html.Div(className="columns-body", children=[
            html.Div([
                html.Label("Add a metric column"),
                dcc.Dropdown(id=METRIC_NAME, options=board.store.metric_names(), placeholder="metric",
                             className="metric-name"),
                dcc.Dropdown(id=METRIC_ROLLUP, options=list(ROLLUPS), value="min", clearable=False,
                             className="metric-rollup"),
                html.Button("Add", id=ADD_METRIC, disabled=disabled),
            ], className="row"),
            html.Div([
                html.Label("Add a column by dotted path"),
                dcc.Input(id=CUSTOM_PATH, placeholder="config.optimizer.lr or host.cpu", debounce=False),
                html.Button("Add", id=ADD_CUSTOM, disabled=disabled),
            ], className="row"),
            html.Label("Metric and custom columns (remove with x)"),
            dcc.Dropdown(id=EXTRA, multi=True, disabled=disabled, **_extra_options(settings)),
            html.Label("Shown columns"),
            dcc.Checklist(id=VISIBLE, className="visible-columns", inline=True, **_visible_options(defs)),
        ]),
    ])


def _extra_options(settings: BoardSettings) -> dict[str, list]:
    options = [{"label": f"{c.name or c.key}", "value": f"m:{c.metric}\x1f{c.rollup}"} for c in settings.metric_columns]
    options += [{"label": c.name or c.path, "value": f"c:{c.path}"} for c in settings.custom_columns]
    return {"options": options, "value": [option["value"] for option in options]}


def _visible_options(defs: list[dict]) -> dict[str, list]:
    return {"options": [{"label": d["headerName"], "value": d["colId"]} for d in defs],
            "value": [d["colId"] for d in defs if not d.get("hide")]}


def change_columns(board: Board, trigger: str | None, metric: str | None, rollup: str | None, path: str | None,
                   kept: Sequence[str] | None, visible: Sequence[str] | None,
                   defs: Sequence[Mapping[str, Any]]) -> tuple[BoardSettings, str]:
    """Apply a change of the columns panel to the saved settings; returns them and a message."""
    store = board.store
    settings = store.board_settings()
    message = ""
    if trigger == ADD_METRIC and metric and rollup in ROLLUPS:
        if all(c.key != f"{metric}.{rollup}" for c in settings.metric_columns):
            store.save_metric_columns([*settings.metric_columns, MetricColumn(metric, rollup)])
        message = f"added column {metric}.{rollup}"
    elif trigger == ADD_CUSTOM and path and path.strip():
        path = path.strip()
        if all(c.path != path for c in settings.custom_columns):
            store.save_custom_columns([*settings.custom_columns, CustomColumn(path)])
        message = f"added column {path}"
    elif trigger == EXTRA:
        keep = set(kept or [])
        store.save_metric_columns([c for c in settings.metric_columns if f"m:{c.metric}\x1f{c.rollup}" in keep])
        store.save_custom_columns([c for c in settings.custom_columns if f"c:{c.path}" in keep])
    elif trigger == VISIBLE:
        shown = set(visible or [])
        store.save_layout([{"colId": d["colId"], "width": d.get("width"), "hide": d["colId"] not in shown}
                           for d in defs])
    return store.board_settings(), message


def register(app: Any, board: Board) -> None:
    """Register the page's callbacks on ``app``."""

    @app.callback(Output(FILTER, "data"), Output(QUERY_ERROR, "children"),
                  Input(STATUS, "value"), Input(QUERY, "value"))
    def _filter(status: str | None, text: str | None) -> tuple[Any, str]:
        return check_filter(status, text)

    # Rows report their own trouble beside the actions' messages: a refresh every few seconds must not wipe out
    # "saved tags of run 2", and a recovered database clears its own warning.
    @app.callback(Output(GRID, "getRowsResponse"), Output(ROWS_STATUS, "children"), Output(COUNT, "children"),
                  Input(GRID, "getRowsRequest"), State(FILTER, "data"), State(SPEC, "data"),
                  prevent_initial_call=True)
    def _rows(request: dict | None, filter_text: str, spec: dict) -> tuple[Any, str, Any]:
        if not request:
            return no_update, no_update, no_update
        try:
            response = page_rows(board, request, filter_text, spec)
        except BadQuery as error:
            return {"rowData": [], "rowCount": 0}, str(error), "0 runs"
        except ReadError as error:
            logger.warning("reading runs failed: %s", error)
            return no_update, f"{error}; retrying", no_update
        except ValueError as error:
            return {"rowData": [], "rowCount": 0}, str(error), "0 runs"
        return response, "", f"{response['rowCount']} run{'s' if response['rowCount'] != 1 else ''}"

    # Reload from the first row when the filter or the columns change; refresh loaded rows on every tick
    # (new runs appear, running rows update; scroll, sort and selection stay).
    app.clientside_callback(
        """async function(filter, reload) {
            const api = await dash_ag_grid.getApiAsync('%s');
            api.purgeInfiniteCache();
            return window.dash_clientside.no_update;
        }""" % GRID,
        Output(PURGED, "data"), Input(FILTER, "data"), Input(RELOAD, "data"), prevent_initial_call=True)
    app.clientside_callback(
        """async function(tick) {
            const api = await dash_ag_grid.getApiAsync('%s');
            if (!api.getEditingCells().length) { api.refreshInfiniteCache(); }
            return window.dash_clientside.no_update;
        }""" % GRID,
        Output(REFRESHED, "data"), Input(TICK, "n_intervals"), prevent_initial_call=True)

    @app.callback(Output(MESSAGE, "children", allow_duplicate=True), Input(GRID, "cellValueChanged"),
                  prevent_initial_call=True)
    def _edit(changes: list | None) -> str:
        try:
            return save_edits(board, changes or [])
        except (ReadError, KeyError) as error:
            return f"not saved: {error}"

    @app.callback(Output(CONFIRM, "displayed"), Output(CONFIRM, "message"),
                  Input(DELETE, "n_clicks"), State(GRID, "selectedRows"), prevent_initial_call=True)
    def _ask(_clicks: int, selected: list | None) -> tuple[bool, str]:
        ids = [str(row.get("id")) for row in selected or []]
        if not ids or board.read_only:
            return False, ""
        return True, f"Delete {len(ids)} run(s) ({', '.join(ids[:20])}{' ...' if len(ids) > 20 else ''}) with " \
                     "their metrics, samples and artifacts? This cannot be undone."

    @app.callback(Output(MESSAGE, "children", allow_duplicate=True), Output(RELOAD, "data", allow_duplicate=True),
                  Input(CONFIRM, "submit_n_clicks"), State(GRID, "selectedRows"), State(RELOAD, "data"),
                  prevent_initial_call=True)
    def _delete(_submitted: int, selected: list | None, reload: int) -> tuple[str, int]:
        try:
            return delete_selected(board, selected), (reload or 0) + 1
        except ReadError as error:
            return f"not deleted: {error}", no_update

    @app.callback(Output(URL, "href"), Output(MESSAGE, "children", allow_duplicate=True),
                  Input(COMPARE, "n_clicks"), State(GRID, "selectedRows"), prevent_initial_call=True)
    def _compare(_clicks: int, selected: list | None) -> tuple[Any, str]:
        run_ids = [row["id"] for row in selected or [] if "id" in row]
        if len(run_ids) < 2:
            return no_update, "select two or more runs to compare"
        return compare_url(run_ids[:MAX_RUNS]), ""

    @app.callback(Output(DOWNLOAD, "data"), Input(EXPORT, "n_clicks"), State(FILTER, "data"),
                  State(GRID, "getRowsRequest"), State(SPEC, "data"), State(GRID, "columnState"),
                  State(GRID, "columnDefs"), prevent_initial_call=True)
    def _export(_clicks: int, filter_text: str, request: dict | None, spec: dict, state: list | None,
                defs: list) -> dict:
        text = csv_export(board, filter_text, (request or {}).get("sortModel"), spec, state, defs)
        return dcc.send_string(text, "runs.csv", type="text/csv")

    @app.callback(Output(GRID, "columnDefs"), Output(SPEC, "data"), Output(EXTRA, "options"), Output(EXTRA, "value"),
                  Output(VISIBLE, "options"), Output(VISIBLE, "value"), Output(RELOAD, "data"),
                  Output(MESSAGE, "children", allow_duplicate=True),
                  Input(ADD_METRIC, "n_clicks"), Input(ADD_CUSTOM, "n_clicks"), Input(EXTRA, "value"),
                  Input(VISIBLE, "value"), State(METRIC_NAME, "value"), State(METRIC_ROLLUP, "value"),
                  State(CUSTOM_PATH, "value"), State(GRID, "columnDefs"), State(RELOAD, "data"),
                  prevent_initial_call=True)
    def _columns(_m: int, _c: int, kept: list | None, visible: list | None, metric: str | None, rollup: str | None,
                 path: str | None, defs: list, reload: int) -> tuple:
        if board.read_only:
            return (no_update,) * 7 + ("read-only board: columns are not saved",)
        try:
            settings, message = change_columns(board, ctx.triggered_id, metric, rollup, path, kept, visible, defs)
        except (ValueError, ReadError) as error:
            return (no_update,) * 7 + (f"columns not saved: {error}",)
        new_defs = cols.column_defs(board.store.config_keys(), settings, read_only=board.read_only)
        extra, shown = _extra_options(settings), _visible_options(new_defs)
        return (new_defs, cols.spec(settings), extra["options"], extra["value"], shown["options"], shown["value"],
                (reload or 0) + 1, message)

    @app.callback(Output(MESSAGE, "children", allow_duplicate=True), Input(GRID, "columnState"),
                  prevent_initial_call=True)
    def _layout(state: list | None) -> Any:
        if board.read_only or not state:
            return no_update
        try:
            board.store.save_layout(cols.layout_from_state(state))
        except ReadError as error:
            return f"layout not saved: {error}"
        return no_update
