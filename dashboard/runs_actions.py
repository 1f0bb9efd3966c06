"""What the runs page's callbacks do, as plain functions the tests call: filters checked, pages of rows read, edits
saved, runs deleted, the table exported as CSV, columns changed."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from dash import no_update

from dashboard import columns as cols
from dashboard.board import Board
from sacred_gpu.read import (
    QueryError,
    compile_filter,
)

logger = logging.getLogger(__name__)

BLOCK = 100  # rows per request
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
               column_state: Sequence[Mapping[str, Any]] | None, defs: Sequence[Mapping[str, Any]]) -> str:
    """The current view as CSV: the filter, sort and shown columns in their order, every matching row."""
    metrics, custom = cols.from_spec(spec)
    frame = board.store.runs(filter_text or None, sort=cols.sort_argument(sort_model), limit=CSV_LIMIT,
                             metrics=cols.metric_request(metrics), columns=[c.path for c in custom])
    order = column_state or [{"colId": d["colId"], "hide": d.get("hide")} for d in defs]
    shown = [item["colId"] for item in order if not item.get("hide") and item["colId"] != "id"
             and item["colId"] in frame.columns]
    return frame.reset_index()[["id"] + shown].to_csv(index=False)
