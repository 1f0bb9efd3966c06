"""The runs table as CSV: the columns a person sees, in their order, with values written as the table shows them
(tags as text, whole numbers without ``.0``, durations as h:mm:ss, times in UTC), and text a spreadsheet would
run as a formula made inert."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

#: First characters that make a spreadsheet read a cell as a formula (OWASP's CSV injection list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def shown_columns(column_state: Sequence[Mapping[str, Any]] | None, defs: Sequence[Mapping[str, Any]],
                  visible: Iterable[str] | None) -> list[str]:
    """Column ids in the grid's order (``column_state``, then columns it lacks in ``defs``' order), only those in
    ``visible`` (the columns chooser: the one source of what is shown) or, without it, those not hidden."""
    order = [item for item in column_state or [] if item.get("colId")]
    known = {item["colId"] for item in order}
    order += [{"colId": d["colId"], "hide": d.get("hide")} for d in defs if d["colId"] not in known]
    if visible is not None:
        wanted = set(visible)
        return [item["colId"] for item in order if item["colId"] in wanted]
    return [item["colId"] for item in order if not item.get("hide")]


def cell_text(value: Any, column: str = "") -> str:
    """A value as the table shows it, as CSV text; text starting like a formula is prefixed with ``'``."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column == "duration" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _duration(value)
    if column == "tags" and isinstance(value, (list, tuple)):
        return _inert(", ".join(str(tag) for tag in value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (list, tuple, dict)):
        return _inert(json.dumps(value, default=str))
    return _inert(str(value))


def _duration(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _inert(text: str) -> str:
    """Text a spreadsheet shows as text: a leading ``'`` where it would start a formula (OWASP)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def to_csv(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """``frame`` (a :meth:`RunStore.runs` frame indexed by id) as CSV: the id, then ``columns`` it has."""
    table = frame.reset_index()
    shown = ["id"] + [column for column in columns if column != "id" and column in table.columns]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([_inert(column) for column in shown])
    for record in table[shown].itertuples(index=False, name=None):
        writer.writerow([cell_text(value, column) for value, column in zip(record, shown)])
    return out.getvalue()
