"""The runs table (route ``/``): paged, sorted and filtered in the database through the store.

The grid uses AG Grid's infinite row model: it asks for blocks of rows (``getRowsRequest``) as the user scrolls, and
:func:`rows` answers each from one store query. The layout (:mod:`dashboard.runs_layout`) reads nothing; :func:`load`
fills in the columns and saved settings when the page loads. Callbacks are thin: the work is in
:mod:`dashboard.runs_actions`.
"""

from __future__ import annotations

import logging
from typing import Any

from dash import Input, Output, State, ctx, dcc, no_update
from dash.exceptions import PreventUpdate

from dashboard import columns as cols
from dashboard import runs_actions as actions
from dashboard.board import URL, current_board
from dashboard.pages.compare import MAX_RUNS, compare_url
from dashboard.runs_actions import change_columns, check_filter
from dashboard.runs_layout import (
    ADD_CUSTOM,
    ADD_METRIC,
    ADD_SPARK,
    ATTACHED,
    COLUMNS_TOGGLE,
    COMPARE,
    CONFIRM,
    COUNT,
    CUSTOM_PATH,
    DELETE,
    DOWNLOAD,
    DRAWER,
    EXPORT,
    EXTRA,
    FILTER,
    GRID,
    GROUP_BOX,
    GROUP_GRID,
    GROUP_KEY,
    GROUP_METRIC,
    GROUP_ROLLUP,
    GROUP_STATUS,
    LAYOUT,
    LOADED,
    MAX_FIT_WIDTH,
    MESSAGE,
    METRIC_NAME,
    METRIC_ROLLUP,
    PURGED,
    QUERY,
    QUERY_ERROR,
    REFRESHED,
    RELOAD,
    ROWS_STATUS,
    SIZED,
    SPARK_METRIC,
    SPEC,
    STATUS,
    TICK,
    VISIBLE,
    VOCABULARY,
    extra_options,
    layout,
    visible_options,
)
from sacred_gpu.read import BadQuery, ReadError

logger = logging.getLogger(__name__)

__all__ = ["ADD_CUSTOM", "ADD_METRIC", "ADD_SPARK", "EXTRA", "VISIBLE", "change_columns", "extra_options", "layout",
           "register"]


def load(_loaded: Any, _tick: int | None, spec: dict | None) -> tuple:
    """On page load (and on each refresh tick until it has loaded once): the grid's columns, the rows' spec, the
    columns chooser, the metric names (for metric, sparkline and group choices), the columns a person sized, the
    names a filter can use, the keys to group by."""
    if spec is not None:
        raise PreventUpdate
    board = current_board()
    try:
        page = actions.load_page(board)
    except ReadError as error:
        logger.warning("loading the runs page failed: %s", error)
        return (no_update,) * 13 + (f"{error}; retrying",)
    extra, shown = extra_options(page.settings), visible_options(page.defs)
    return (page.defs, page.spec, extra["options"], extra["value"], shown["options"], shown["value"],
            page.metric_names, page.metric_names, page.metric_names, actions.group_keys(page.config_keys),
            page.sized, page.vocabulary, 1, "")


def groups(key: str | None, metric: str | None, rollup: str | None, filter_text: str, _reload: int | None
           ) -> tuple[Any, Any, bool, str]:
    """The group view: one row per value of the chosen key among the runs the filter matches, the roll-up's
    mean and spread across each group; hidden until a key and a metric are chosen."""
    if not key or not metric or not rollup:
        return no_update, no_update, True, ""
    try:
        data = actions.group_rows(current_board(), key, metric, rollup, filter_text)
    except BadQuery as error:
        return [], no_update, True, str(error)
    except ReadError as error:
        logger.warning("grouping runs failed: %s", error)
        return no_update, no_update, False, f"{error}; retrying"
    return data, cols.group_defs(key, f"{metric}.{rollup}"), False, ""


def apply_filter(status: str | None, text: str | None) -> tuple[Any, str]:
    """The filter in force after a status pick or a typed query (Enter), or the error that says where it is wrong."""
    return check_filter(status, text)


def rows(request: dict | None, filter_text: str, spec: dict | None) -> tuple[Any, str, Any]:
    """One block of rows; trouble is reported beside the actions' messages (a refresh every few seconds must not
    wipe out "saved tags of run 2"), and a recovered database clears its own warning."""
    if not request:
        return no_update, no_update, no_update
    board = current_board()
    try:
        # every request is answered (a request left unanswered leaves its block loading): one asked before the
        # page's load has given the spec reads it here
        spec = cols.spec(board.store.board_settings()) if spec is None else spec
        response = actions.page_rows(board, request, filter_text, spec)
    except BadQuery as error:
        return {"rowData": [], "rowCount": 0}, str(error), "0 runs"
    except ReadError as error:
        logger.warning("reading runs failed: %s", error)
        return no_update, f"{error}; retrying", no_update
    return response, "", f"{response['rowCount']} run{'s' if response['rowCount'] != 1 else ''}"


def edit(changes: list | None) -> str:
    """Save an edited tag or note."""
    try:
        return actions.save_edits(current_board(), changes or [])
    except (ReadError, KeyError) as error:
        return f"not saved: {error}"


def ask(_clicks: int, selected: list | None) -> tuple[bool, str]:
    """The confirmation before a delete."""
    ids = [str(row.get("id")) for row in selected or []]
    if not ids or current_board().read_only:
        return False, ""
    return True, (f"Delete {len(ids)} run(s) ({', '.join(ids[:20])}{' ...' if len(ids) > 20 else ''}) with "
                  "their metrics, samples and artifacts? This cannot be undone.")


def delete(_submitted: int, selected: list | None, reload: int) -> tuple[str, Any]:
    """Delete the selected runs once confirmed."""
    try:
        return actions.delete_selected(current_board(), selected), (reload or 0) + 1
    except ReadError as error:
        return f"not deleted: {error}", no_update


def compare(_clicks: int, selected: list | None) -> tuple[Any, str]:
    """Open the selected runs side by side."""
    run_ids = [row["id"] for row in selected or [] if "id" in row]
    if len(run_ids) < 2:
        return no_update, "select two or more runs to compare"
    return compare_url(run_ids[:MAX_RUNS]), ""


def export(_clicks: int, filter_text: str, request: dict | None, spec: dict, state: list | None, defs: list,
           visible: list | None) -> Any:
    """The current view as a CSV download."""
    try:
        text = actions.csv_export(current_board(), filter_text, (request or {}).get("sortModel"), spec, state, defs,
                                  visible)
    except ReadError as error:
        return no_update, f"not exported: {error}"
    return dcc.send_string(text, "runs.csv", type="text/csv"), ""


def change(_m: int, _c: int, _s: int, kept: list | None, visible: list | None, metric: str | None,
           rollup: str | None, path: str | None, spark: str | None, defs: list, spec: dict | None,
           reload: int) -> tuple:
    """A change in the columns chooser: saved, then the grid's columns rebuilt."""
    board, trigger = current_board(), ctx.triggered_id
    if spec is None or (trigger == VISIBLE and set(visible or []) == {d["colId"] for d in defs if not d.get("hide")}):
        raise PreventUpdate  # the page's load set the chooser: nothing changed
    if trigger == EXTRA and set(kept or []) == set(extra_options(cols.settings_from_spec(spec))["value"]):
        raise PreventUpdate
    if board.read_only:
        return (no_update,) * 7 + ("read-only board: columns are not saved",)
    try:
        settings, message = change_columns(board, trigger, metric, rollup, path, kept, visible, defs, spark)
        new_defs = actions.column_defs(board, settings)
    except ReadError as error:
        return (no_update,) * 7 + (f"columns not saved: {error}",)
    extra, shown = extra_options(settings), visible_options(new_defs)
    return (new_defs, cols.spec(settings), extra["options"], extra["value"], shown["options"], shown["value"],
            (reload or 0) + 1, message)


def save_layout(sent: dict | None, spec: dict | None, defs: list | None, options: list | None) -> tuple[Any, Any]:
    """Save the column order, visibility and the widths a person set, for every browser (``sent`` by
    ``runs_table.js``: the grid's ``columns`` state, the ids a person ``sized``, the sending ``page`` and its
    ``seq``); the columns chooser follows the grid's order (a column dragged in the grid moves in the chooser too)."""
    board = current_board()
    state = (sent or {}).get("columns")
    if not state or spec is None:
        return no_update, no_update
    ordered = visible_options(cols.apply_layout([dict(d) for d in defs or []], cols.layout_from_state(state)))
    moved = ordered["options"] if [o["value"] for o in ordered["options"]] != [o["value"] for o in options or []] \
        else no_update
    if board.read_only:
        return no_update, moved
    try:
        actions.save_layout(board, state, sent.get("sized"), sent.get("page"), sent.get("seq"))
    except ReadError as error:
        return f"layout not saved: {error}", moved
    return no_update, moved


def register(app: Any, _board: Any = None) -> None:
    """Register the page's callbacks on ``app`` (they read the board with :func:`current_board`; a board passed
    as before is not used)."""
    dup = {"allow_duplicate": True}
    app.callback(Output(GRID, "columnDefs", **dup), Output(SPEC, "data", **dup), Output(EXTRA, "options", **dup),
                 Output(EXTRA, "value", **dup), Output(VISIBLE, "options", **dup), Output(VISIBLE, "value", **dup),
                 Output(METRIC_NAME, "options"), Output(SPARK_METRIC, "options"), Output(GROUP_METRIC, "options"),
                 Output(GROUP_KEY, "options"), Output(SIZED, "data", **dup), Output(VOCABULARY, "data"),
                 Output(RELOAD, "data", **dup), Output(ROWS_STATUS, "children", **dup),
                 Input(LOADED, "data"), Input(TICK, "n_intervals"), State(SPEC, "data"),
                 prevent_initial_call="initial_duplicate")(load)
    app.callback(Output(FILTER, "data"), Output(QUERY_ERROR, "children"),
                 Input(STATUS, "value"), Input(QUERY, "value"))(apply_filter)
    app.callback(Output(GRID, "getRowsResponse"), Output(ROWS_STATUS, "children", **dup), Output(COUNT, "children"),
                 Input(GRID, "getRowsRequest"), State(FILTER, "data"), State(SPEC, "data"),
                 prevent_initial_call=True)(rows)
    app.callback(Output(MESSAGE, "children", **dup), Input(GRID, "cellValueChanged"), prevent_initial_call=True)(edit)
    app.callback(Output(CONFIRM, "displayed"), Output(CONFIRM, "message"), Input(DELETE, "n_clicks"),
                 State(GRID, "selectedRows"), prevent_initial_call=True)(ask)
    app.callback(Output(MESSAGE, "children", **dup), Output(RELOAD, "data", **dup), Input(CONFIRM, "submit_n_clicks"),
                 State(GRID, "selectedRows"), State(RELOAD, "data"), prevent_initial_call=True)(delete)
    app.callback(Output(URL, "href"), Output(MESSAGE, "children", **dup), Input(COMPARE, "n_clicks"),
                 State(GRID, "selectedRows"), prevent_initial_call=True)(compare)
    app.callback(Output(DOWNLOAD, "data"), Output(MESSAGE, "children", **dup), Input(EXPORT, "n_clicks"),
                 State(FILTER, "data"), State(GRID, "getRowsRequest"), State(SPEC, "data"), State(GRID, "columnState"),
                 State(GRID, "columnDefs"), State(VISIBLE, "value"), prevent_initial_call=True)(export)
    app.callback(Output(GRID, "columnDefs", **dup), Output(SPEC, "data", **dup), Output(EXTRA, "options", **dup),
                 Output(EXTRA, "value", **dup), Output(VISIBLE, "options", **dup), Output(VISIBLE, "value", **dup),
                 Output(RELOAD, "data", **dup), Output(MESSAGE, "children", **dup),
                 Input(ADD_METRIC, "n_clicks"), Input(ADD_CUSTOM, "n_clicks"), Input(ADD_SPARK, "n_clicks"),
                 Input(EXTRA, "value"), Input(VISIBLE, "value"), State(METRIC_NAME, "value"),
                 State(METRIC_ROLLUP, "value"), State(CUSTOM_PATH, "value"), State(SPARK_METRIC, "value"),
                 State(GRID, "columnDefs"), State(SPEC, "data"), State(RELOAD, "data"),
                 prevent_initial_call=True)(change)
    app.callback(Output(GROUP_GRID, "rowData"), Output(GROUP_GRID, "columnDefs"), Output(GROUP_BOX, "hidden"),
                 Output(GROUP_STATUS, "children"), Input(GROUP_KEY, "value"), Input(GROUP_METRIC, "value"),
                 Input(GROUP_ROLLUP, "value"), Input(FILTER, "data"), Input(RELOAD, "data"),
                 prevent_initial_call=True)(groups)
    app.callback(Output(MESSAGE, "children", **dup), Output(VISIBLE, "options", **dup), Input(LAYOUT, "data"),
                 State(SPEC, "data"), State(GRID, "columnDefs"), State(VISIBLE, "options"),
                 prevent_initial_call=True)(save_layout)
    _register_clientside(app)


def _register_clientside(app: Any) -> None:
    """The grid's own work in the browser (``dashboard/assets/runs_table.js``): reload from the first row when the
    filter or the columns change; refresh loaded rows on every tick (new runs appear, running rows update; scroll,
    sort and selection stay); columns fit their content; completion of the query; the columns drawer."""
    app.clientside_callback(f"(filter, reload) => window.runsTable.purge('{GRID}')", Output(PURGED, "data"),
                            Input(FILTER, "data"), Input(RELOAD, "data"), prevent_initial_call=True)
    app.clientside_callback(f"(tick) => window.runsTable.refresh('{GRID}')", Output(REFRESHED, "data"),
                            Input(TICK, "n_intervals"), prevent_initial_call=True)
    app.clientside_callback(
        f"(sized, vocabulary) => window.runsTable.attach('{GRID}', '{QUERY}', '{LAYOUT}', sized, vocabulary, "
        f"{MAX_FIT_WIDTH})", Output(ATTACHED, "data"), Input(SIZED, "data"), Input(VOCABULARY, "data"))
    app.clientside_callback("(clicks) => !(clicks % 2)", Output(DRAWER, "hidden"), Input(COLUMNS_TOGGLE, "n_clicks"),
                            prevent_initial_call=True)
