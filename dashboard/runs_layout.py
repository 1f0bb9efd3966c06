"""The runs page's components (route ``/``), built without reading the database: the callback
:func:`dashboard.pages.runs.load` fills in what the database holds (columns, saved settings, names to complete)
when the page loads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dash_ag_grid as dag
from dash import dcc, html

from dashboard import columns as cols
from dashboard.board import Board
from dashboard.pages.compare import MAX_RUNS
from sacred_gpu.read import ROLLUPS, BoardSettings

GRID = "runs-grid"
QUERY = "runs-query"
SUGGESTIONS = "runs-query-suggestions"  # html.Datalist: completions of the query being typed
VOCABULARY = "runs-vocabulary"  # dcc.Store: the names a query can use (config keys, metric roll-ups, statuses)
STATUS = "runs-status"
QUERY_ERROR = "runs-query-error"
FILTER = "runs-filter"  # dcc.Store: the filter in force
SPEC = "runs-spec"  # dcc.Store: metric and custom columns, for rows requests (None until the page has loaded)
RELOAD = "runs-reload"  # dcc.Store: bumped to reload the table from its first row
SIZED = "runs-sized"  # dcc.Store: ids of the columns a person sized (the others fit their content)
LAYOUT = "runs-layout"  # dcc.Store: the grid's columns as a person left them, to save ({columns, sized, page, seq})
LOADED = "runs-loaded"  # dcc.Store: fires the page's load callback once
TICK = "runs-tick"
PURGED = "runs-purged"  # dcc.Store outputs of the client-side callbacks that drive the grid
REFRESHED = "runs-refreshed"
ATTACHED = "runs-attached"
MESSAGE = "runs-message"  # what the user's last action did (saved, deleted, ...)
ROWS_STATUS = "runs-rows-status"  # why rows cannot be read now (MongoDB unreachable, a bad filter), else empty
COUNT = "runs-count"
COLUMNS_TOGGLE = "runs-columns-toggle"
DRAWER = "runs-columns-drawer"
METRIC_NAME = "runs-metric-name"
METRIC_ROLLUP = "runs-metric-rollup"
ADD_METRIC = "runs-add-metric"
CUSTOM_PATH = "runs-custom-path"
ADD_CUSTOM = "runs-add-custom"
EXTRA = "runs-extra-columns"
SPARK_METRIC = "runs-spark-metric"
ADD_SPARK = "runs-add-spark"
GROUP_KEY = "runs-group-key"  # the group view: runs grouped by a config key, a roll-up's spread per group
GROUP_METRIC = "runs-group-metric"
GROUP_ROLLUP = "runs-group-rollup"
GROUP_BOX = "runs-groups"
GROUP_GRID = "runs-group-grid"
GROUP_STATUS = "runs-group-status"
VISIBLE = "runs-visible-columns"
DELETE = "runs-delete"
COMPARE = "runs-compare"
CONFIRM = "runs-confirm-delete"
EXPORT = "runs-export"
DOWNLOAD = "runs-download"

BLOCK = 100  #: rows per request of the grid
#: Roll-ups a group's spread is taken of (a step is no quantity to average).
GROUP_ROLLUPS = tuple(rollup for rollup in ROLLUPS if not rollup.endswith("_step"))
#: Widest a column grows to fit its content (px); longer text is cut with its whole value in the tooltip.
MAX_FIT_WIDTH = 480


def layout(board: Board) -> html.Div:
    """The page's components; the grid's columns and the saved settings arrive with the load callback."""
    grid = dag.AgGrid(
        id=GRID, rowModelType="infinite", columnDefs=[], getRowId="params.data.id.toString()",
        defaultColDef={"resizable": True, "sortable": True, "filter": False, "suppressHeaderMenuButton": True,
                       "wrapHeaderText": True, "autoHeaderHeight": True},
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
        dcc.Input(id=QUERY, type="text", debounce=True, className="query", list=SUGGESTIONS, autoComplete="off",
                  placeholder='filter: status == COMPLETED and config.lr < 0.01 and '
                              'tags contains "baseline" and val_loss.min < 0.3'),
        html.Datalist(id=SUGGESTIONS),
        html.Span(id=QUERY_ERROR, className="query-error", role="alert"),
    ])
    actions = html.Div(className="toolbar", children=[
        html.Span(id=COUNT, className="count"),
        html.Button("Compare selected", id=COMPARE, title=f"open the selected runs (up to {MAX_RUNS}) side by side"),
        html.Button("Export CSV", id=EXPORT), dcc.Download(id=DOWNLOAD),
        html.Button("Delete selected", id=DELETE, disabled=board.read_only,
                    title="read-only board" if board.read_only else "delete the selected runs"),
        dcc.ConfirmDialog(id=CONFIRM),
        html.Button("Columns", id=COLUMNS_TOGGLE, className="columns-toggle", title="choose the table's columns"),
        html.Span(id=MESSAGE, className="message", role="status"),
        html.Span(id=ROWS_STATUS, className="message rows-status", role="status"),
    ])
    return html.Div(className="runs-page", children=[
        toolbar, _group_bar(), actions, _group_view(), html.Div(className="runs-body", children=[
            html.Div(grid, className="runs-grid-box"), _columns_drawer(board.read_only)]),
        dcc.Store(id=FILTER, data=""), dcc.Store(id=SPEC, data=None), dcc.Store(id=RELOAD, data=0),
        dcc.Store(id=SIZED, data=[]), dcc.Store(id=LAYOUT), dcc.Store(id=LOADED, data=True),
        dcc.Store(id=VOCABULARY, data=[]),
        dcc.Store(id=PURGED), dcc.Store(id=REFRESHED), dcc.Store(id=ATTACHED),
        dcc.Interval(id=TICK, interval=int(board.refresh * 1000)),
    ])


def _columns_drawer(read_only: bool) -> html.Aside:
    """The columns chooser: a drawer beside the table (opened by the Columns button)."""
    return html.Aside(id=DRAWER, className="columns-drawer", hidden=True, children=[
        html.H3("Columns"),
        html.Label("Shown columns, in the table's order (a hidden column keeps its place)"),
        dcc.Checklist(id=VISIBLE, className="visible-columns", options=[], value=[]),
        html.Label("Add a metric column"),
        html.Div(className="row", children=[
            dcc.Dropdown(id=METRIC_NAME, options=[], placeholder="metric", className="metric-name"),
            dcc.Dropdown(id=METRIC_ROLLUP, options=list(ROLLUPS), value="min", clearable=False,
                         className="metric-rollup"),
            html.Button("Add", id=ADD_METRIC, disabled=read_only),
        ]),
        html.Label("Add a sparkline (a metric's history in each row)"),
        html.Div(className="row", children=[
            dcc.Dropdown(id=SPARK_METRIC, options=[], placeholder="metric", className="metric-name"),
            html.Button("Add", id=ADD_SPARK, disabled=read_only),
        ]),
        html.Label("Add a column by dotted path"),
        html.Div(className="row", children=[
            dcc.Input(id=CUSTOM_PATH, placeholder="config.optimizer.lr or host.cpu", debounce=False),
            html.Button("Add", id=ADD_CUSTOM, disabled=read_only),
        ]),
        html.Label("Metric, custom and sparkline columns (remove with x)"),
        dcc.Dropdown(id=EXTRA, multi=True, disabled=read_only, options=[], value=[]),
    ])


def _group_bar() -> html.Div:
    """The group view's controls: a key (config keys, filled by the page's load) and a metric roll-up."""
    return html.Div(className="toolbar group-bar", children=[
        html.Label("Group by", htmlFor=GROUP_KEY),
        dcc.Dropdown(id=GROUP_KEY, options=[], placeholder="config key", className="group-key"),
        dcc.Dropdown(id=GROUP_METRIC, options=[], placeholder="metric", className="group-metric"),
        dcc.Dropdown(id=GROUP_ROLLUP, options=list(GROUP_ROLLUPS), value="min", clearable=False,
                     className="group-rollup"),
        html.Span(id=GROUP_STATUS, className="message rows-status", role="status"),
    ])


def _group_view() -> html.Div:
    """One row per value of the group key: runs, and the roll-up's mean, spread, min and max across them."""
    grid = dag.AgGrid(id=GROUP_GRID, rowData=[], columnDefs=[], className="ag-theme-quartz",
                      defaultColDef={"resizable": True, "sortable": True, "suppressHeaderMenuButton": True,
                                     "wrapHeaderText": True, "autoHeaderHeight": True},
                      dashGridOptions={"domLayout": "autoHeight", "suppressFieldDotNotation": True},
                      style={"width": "100%"})
    return html.Div(id=GROUP_BOX, className="group-view", hidden=True, children=[grid])


def extra_options(settings: BoardSettings) -> dict[str, list]:
    """Options and value of the metric, custom and sparkline columns' dropdown."""
    options = [{"label": f"{c.name or c.key}", "value": f"m:{c.metric}\x1f{c.rollup}"} for c in settings.metric_columns]
    options += [{"label": c.name or c.path, "value": f"c:{c.path}"} for c in settings.custom_columns]
    options += [{"label": f"sparkline of {name}", "value": f"s:{name}"} for name in settings.sparklines]
    return {"options": options, "value": [option["value"] for option in options]}


def visible_options(defs: Sequence[Mapping[str, Any]]) -> dict[str, list]:
    """Options (in the table's order) and value (the shown ones) of the shown-columns checklist."""
    return {"options": [{"label": d["headerName"], "value": d["colId"]} for d in defs],
            "value": [d["colId"] for d in defs if not d.get("hide")]}
