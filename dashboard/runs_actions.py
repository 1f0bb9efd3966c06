"""What the runs page's callbacks do, as plain functions the tests call: the page loaded, filters checked and
completed, pages of rows read, edits saved, runs deleted, the table exported as CSV, columns changed."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from dash import no_update

from dashboard import columns as cols
from dashboard import runs_csv
from dashboard import runs_layout as ids
from dashboard.board import Board
from dashboard.runs_layout import BLOCK
from sacred_gpu.read import ROLLUPS, BoardSettings, CustomColumn, MetricColumn, QueryError, compile_filter

logger = logging.getLogger(__name__)

CSV_LIMIT = 100_000


def check_filter(status: str | None, text: str | None) -> tuple[str, str]:
    """``(filter, error)``: the filter to apply, or the error that says where a typed query is wrong."""
    combined = cols.combined_filter(status, text)
    try:
        compile_filter(combined)
    except QueryError as error:
        return no_update, f"{error}"
    return combined, ""


def page_rows(board: Board, request: Mapping[str, Any], filter_text: str, spec: Mapping | None) -> dict[str, Any]:
    """One block of rows for the grid's ``getRowsRequest``: ``{"rowData", "rowCount"}``."""
    start, end = int(request.get("startRow", 0)), int(request.get("endRow", BLOCK))
    metrics, custom = cols.from_spec(spec)
    frame = board.store.runs(filter_text or None, sort=cols.sort_argument(request.get("sortModel")),
                             limit=max(1, end - start), skip=start, metrics=cols.metric_request(metrics),
                             columns=[c.path for c in custom])
    data = cols.rows(frame)
    sparklines = (spec or {}).get("sparklines") or []
    if sparklines and data:  # one read for the page's rows, never one per row
        cols.add_sparklines(data, board.store.sparklines([row["id"] for row in data], sparklines,
                                                         points=cols.SPARK_POINTS))
    # The last block tells the total; earlier blocks count the filter's matches in the database.
    count = start + len(data) if len(data) < end - start else board.store.count(filter_text or None)
    return {"rowData": data, "rowCount": count}


def save_edits(board: Board, changes: Sequence[Mapping[str, Any]]) -> str:
    """Save edited tags and notes; returns a message for the user."""
    if board.read_only:
        return "read-only board: edits are not saved"
    saved = []
    for change in changes:
        run_id, column = (change.get("data") or {}).get("id"), change.get("colId")
        value = change.get("value", change.get("newValue"))  # dash-ag-grid >= 33 says "value"
        if column == "tags":
            board.store.set_tags(run_id, cols.parse_tags(value))
        elif column == "notes":
            board.store.set_notes(run_id, str(value or ""))
        else:
            continue
        saved.append(f"{column} of run {run_id}")
    return f"saved {', '.join(saved)}" if saved else ""


def delete_selected(board: Board, selected: Sequence[Mapping[str, Any]] | None) -> str:
    """Delete the selected runs; returns a message for the user."""
    if board.read_only:
        return "read-only board: nothing deleted"
    run_ids = [row["id"] for row in selected or [] if "id" in row]
    if not run_ids:
        return "select runs to delete first"
    deleted = board.store.delete(run_ids)
    return f"deleted {deleted} run{'s' if deleted != 1 else ''}: {', '.join(map(str, run_ids))}"


def csv_export(board: Board, filter_text: str, sort_model: Sequence | None, spec: Mapping | None,
               column_state: Sequence[Mapping[str, Any]] | None, defs: Sequence[Mapping[str, Any]],
               visible: Sequence[str] | None = None) -> str:
    """The current view as CSV: the filter, sort and shown columns (``visible``: the columns chooser's, else
    ``column_state``'s) in the grid's order, every matching row, values as the table shows them."""
    metrics, custom = cols.from_spec(spec)
    frame = board.store.runs(filter_text or None, sort=cols.sort_argument(sort_model), limit=CSV_LIMIT,
                             metrics=cols.metric_request(metrics), columns=[c.path for c in custom])
    return runs_csv.to_csv(frame, runs_csv.shown_columns(column_state, defs, visible))


@dataclass(frozen=True)
class LoadedPage:
    """What the page shows of the database when it loads: columns, saved settings, names a query can use."""

    defs: list[dict[str, Any]]
    spec: dict[str, list]
    settings: BoardSettings
    metric_names: list[str]
    vocabulary: list[str]
    config_keys: list[str]

    @property
    def sized(self) -> list[str]:
        """Columns a person sized (saved with a width): the others fit their content."""
        return [item["colId"] for item in self.settings.layout if item.get("width")]


def load_page(board: Board) -> LoadedPage:
    """The page's columns and settings, read once per page load."""
    settings = board.store.board_settings()
    config_keys = board.store.config_keys()
    metric_names = board.store.metric_names()
    defs = cols.column_defs(config_keys, settings, read_only=board.read_only)
    names = board.store.query_names(config_keys=config_keys, metric_names=metric_names)
    return LoadedPage(defs, cols.spec(settings), settings, metric_names, names, config_keys)


def group_keys(config_keys: Sequence[str]) -> list[dict[str, str]]:
    """What the table can be grouped by: the page's config keys, then the experiment and the host."""
    return [{"label": key.removeprefix("config."), "value": key} for key in config_keys] + \
        [{"label": "experiment", "value": "experiment"}, {"label": "host", "value": "host"}]


def group_rows(board: Board, key: str, metric: str, rollup: str, filter_text: str) -> list[dict[str, Any]]:
    """The group view's rows: one per value of ``key`` among the runs the filter matches, with the number of
    runs and the mean, standard deviation, min and max of ``metric``'s ``rollup`` across them."""
    frame = board.store.groups(key, f"{metric}.{rollup}", filter_text or None)
    rows = []
    for label, stats in frame.iterrows():
        row = {"value": "(no value)" if label is None else label if isinstance(label, (str, int, float)) else
               str(label)}
        row.update({column: None if pd.isna(value) else value.item() if hasattr(value, "item") else value
                    for column, value in stats.items()})
        rows.append(row)
    return rows


def column_defs(board: Board, settings: BoardSettings) -> list[dict[str, Any]]:
    """The grid's column definitions for ``settings``."""
    return cols.column_defs(board.store.config_keys(), settings, read_only=board.read_only)


def change_columns(board: Board, trigger: str | None, metric: str | None, rollup: str | None, path: str | None,
                   kept: Sequence[str] | None, visible: Sequence[str] | None,
                   defs: Sequence[Mapping[str, Any]], spark: str | None = None) -> tuple[BoardSettings, str]:
    """Apply a change of the columns chooser to the saved settings; returns them and a message. Hiding or showing
    a column changes only its visibility: its place and width stay as saved. ``spark``: the metric of a sparkline
    column to add."""
    store = board.store
    settings = store.board_settings()
    message = ""
    if trigger == ids.ADD_METRIC and metric and rollup in ROLLUPS:
        if all(c.key != f"{metric}.{rollup}" for c in settings.metric_columns):
            store.save_metric_columns([*settings.metric_columns, MetricColumn(metric, rollup)])
        message = f"added column {metric}.{rollup}"
    elif trigger == ids.ADD_CUSTOM and path and path.strip():
        path = path.strip()
        if all(c.path != path for c in settings.custom_columns):
            store.save_custom_columns([*settings.custom_columns, CustomColumn(path)])
        message = f"added column {path}"
    elif trigger == ids.ADD_SPARK and spark:
        store.save_sparklines([*settings.sparklines, spark])
        message = f"added a sparkline of {spark}"
    elif trigger == ids.EXTRA:
        keep = set(kept or [])
        store.save_sparklines([name for name in settings.sparklines if f"s:{name}" in keep])
        store.save_metric_columns([c for c in settings.metric_columns if f"m:{c.metric}\x1f{c.rollup}" in keep])
        store.save_custom_columns([c for c in settings.custom_columns if f"c:{c.path}" in keep])
    elif trigger == ids.VISIBLE:
        shown = set(visible or [])
        known = {item["colId"] for item in settings.layout}
        items = [dict(item) for item in settings.layout]
        items += [{"colId": d["colId"], "width": None} for d in defs if d["colId"] not in known]
        store.save_layout([{**item, "hide": item["colId"] not in shown} for item in items])
    return store.board_settings(), message


class _InOrder:
    """Each page's layouts saved in the order the page sent them: the server answers callbacks on several threads,
    so a save can overtake an earlier one; the earlier one, arriving last, is dropped instead of written over it."""

    def __init__(self, pages: int = 1024) -> None:
        self._last: OrderedDict[str, int] = OrderedDict()  # page -> number of its newest save; the oldest pages go
        self._pages = pages
        self._lock = threading.Lock()

    def write(self, page: str | None, seq: int | None, write: Callable[[], bool]) -> bool:
        """``write()`` unless ``page`` already had a save numbered ``seq`` or later; what ``write`` returned, or
        ``False`` when dropped. Saves are written one at a time."""
        with self._lock:
            if page is not None and seq is not None:
                if self._last.get(page, -1) >= seq:
                    return False
                self._last[page] = seq
                self._last.move_to_end(page)
                while len(self._last) > self._pages:
                    self._last.popitem(last=False)
            return write()


_IN_ORDER = _InOrder()


def save_layout(board: Board, column_state: Sequence[Mapping[str, Any]], sized: Sequence[str] | None,
                page: str | None = None, seq: int | None = None) -> bool:
    """Save the grid's column order, visibility and the widths a person set (``sized``; the other columns fit
    their content); returns whether anything changed (an unchanged layout, or one that ``page`` sent before its
    save numbered ``seq`` was saved, is not written)."""
    layout = cols.layout_from_state(column_state, set(sized or []))

    def write() -> bool:
        if [dict(item) for item in board.store.board_settings().layout] == layout:
            return False
        board.store.save_layout(layout)
        return True

    return _IN_ORDER.write(page, seq, write)
