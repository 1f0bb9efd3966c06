"""The runs table's columns and rows as pure functions: column definitions for dash-ag-grid, grid requests turned
into store arguments, DataFrames turned into JSON rows."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from sacred_gpu.read import BoardSettings, CustomColumn, MetricColumn

#: Statuses the quick filter offers (PROBABLY_DEAD is derived from the heartbeat's age).
STATUSES = ("RUNNING", "PROBABLY_DEAD", "COMPLETED", "FAILED", "INTERRUPTED", "TIMEOUT", "QUEUED")

_TIME = {"function": "formatTime(params.value)"}
#: The fixed columns: (column id, header, sort key in the store or None when not sortable, extra definition).
BASE_COLUMNS: tuple[tuple[str, str, str | None, dict[str, Any]], ...] = (
    ("id", "ID", "id", {"cellRenderer": "RunLink", "width": 90, "pinned": "left"}),
    ("experiment", "Experiment", "experiment", {"width": 150}),
    ("status", "Status", "status", {"width": 140, "cellClass": {"function": "statusClass(params.value)"}}),
    ("tags", "Tags", "tags", {"width": 160, "valueFormatter": {"function": "formatTags(params.value)"},
                              "tooltipValueGetter": {"function": "formatTags(params.value)"}}),
    ("notes", "Notes", "notes", {"width": 200, "cellEditor": "agLargeTextCellEditor", "cellEditorPopup": True,
                                 "tooltipField": "notes"}),
    ("start", "Started (UTC)", "start", {"width": 170, "valueFormatter": _TIME}),
    ("duration", "Duration", None, {"width": 110, "valueFormatter": {"function": "formatDuration(params.value)"}}),
    ("host", "Host", "host", {"width": 130}),
    ("gpu", "GPUs", "system.gpu_model", {"width": 170}),
    ("gpu_mem_peak_mib", "Peak GPU mem (MiB)", "system.gpu_mem_peak_mib", {"width": 120}),
    ("gpu_util_mean_pct", "Mean GPU util (%)", "system.gpu_util_mean_pct", {"width": 120}),
    ("gpu_energy_wh", "GPU energy (Wh)", "system.gpu_energy_wh", {"width": 110}),
    ("result", "Result", "result", {"width": 110}),
)
EDITABLE = ("tags", "notes")
_SORT_KEYS = {col_id: key for col_id, _, key, _ in BASE_COLUMNS}
_NUMBER = {"type": "rightAligned", "valueFormatter": {"function": "formatNumber(params.value)"}}
#: Column ids of sparkline columns start with this (no field, roll-up or dotted path does).
SPARK_PREFIX = "sparkline:"
#: Points of a sparkline (at most), read per run of a page.
SPARK_POINTS = 50


def spark_id(metric: str) -> str:
    """The column id of the sparkline column of ``metric``."""
    return f"{SPARK_PREFIX}{metric}"


def column_defs(config_keys: Iterable[str], settings: BoardSettings, *, read_only: bool) -> list[dict[str, Any]]:
    """dash-ag-grid column definitions: the fixed columns, config columns, metric and custom columns, in the
    saved layout's order, widths and visibility (new columns at the end)."""
    defs = []
    for col_id, header, sort_key, extra in BASE_COLUMNS:
        column = {"field": col_id, "colId": col_id, "headerName": header, "sortable": sort_key is not None, **extra}
        if col_id in EDITABLE:
            column["editable"] = not read_only
        if col_id.startswith("gpu_") or col_id == "result":
            column.update({key: value for key, value in _NUMBER.items() if key not in column})
        defs.append(column)
    known = {column["colId"] for column in defs}
    for key in config_keys:
        if key not in known:
            defs.append({"field": key, "colId": key, "headerName": key.removeprefix("config."), "width": 120,
                         "headerTooltip": key, "valueFormatter": {"function": "formatValue(params.value)"}})
            known.add(key)
    for metric in settings.metric_columns:
        if metric.key not in known:
            defs.append({"field": metric.key, "colId": metric.key, "headerName": metric.name or metric.key,
                         "headerTooltip": f"{metric.rollup} of {metric.metric}", "width": 130, **_NUMBER})
            known.add(metric.key)
    for custom in settings.custom_columns:
        if custom.path not in known:
            defs.append({"field": custom.path, "colId": custom.path, "headerName": custom.name or custom.path,
                         "headerTooltip": custom.path, "width": 140,
                         "valueFormatter": {"function": "formatValue(params.value)"}})
            known.add(custom.path)
    for metric in settings.sparklines:
        col_id = spark_id(metric)
        if col_id not in known:
            defs.append({"field": col_id, "colId": col_id, "headerName": f"{metric} (history)", "width": 140,
                         "headerTooltip": f"sparkline of {metric}: up to {SPARK_POINTS} points of its series",
                         "sortable": False, "cellRenderer": "Sparkline"})
            known.add(col_id)
    for column in defs:  # a width only where a person set one (saved): the others fit their content
        column["initialWidth"] = column.pop("width")
    return apply_layout(defs, settings.layout)


def group_defs(key: str, rollup: str) -> list[dict[str, Any]]:
    """Column definitions of the group view: the key's value, the runs, and the roll-up's spread across them."""
    number = {**_NUMBER, "width": 120}
    return [{"field": "value", "headerName": key.removeprefix("config."), "headerTooltip": key, "width": 220,
             "maxWidth": 480, "tooltipField": "value", "valueFormatter": {"function": "formatValue(params.value)"}},
            {"field": "runs", "headerName": "Runs", "width": 80, "type": "rightAligned"},
            {"field": "count", "headerName": f"with {rollup}", "width": 120, "type": "rightAligned",
             "headerTooltip": f"runs of the group with a value of {rollup}"},
            {"field": "mean", "headerName": f"mean {rollup}", **number},
            {"field": "std", "headerName": "std", "headerTooltip": f"sample standard deviation of {rollup} across "
             "the group's runs", **number},
            {"field": "min", "headerName": "min", **number}, {"field": "max", "headerName": "max", **number}]


def apply_layout(defs: list[dict[str, Any]], layout: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``defs`` reordered, resized and hidden as ``layout`` (``[{"colId", "width", "hide"}]``) says."""
    position = {item["colId"]: index for index, item in enumerate(layout)}
    saved = {item["colId"]: item for item in layout}
    ordered = sorted(defs, key=lambda column: position.get(column["colId"], len(position)))
    for column in ordered:
        item = saved.get(column["colId"])
        if item:
            if isinstance(item.get("width"), (int, float)) and item["width"] > 0:
                column["width"] = int(item["width"])
                column["context"] = {"sized": True}  # a person's width: not fitted to the content
            column["hide"] = bool(item.get("hide"))
    return ordered


def layout_from_state(column_state: Sequence[Mapping[str, Any]], sized: set[str] | None = None) -> list[dict[str, Any]]:
    """The layout to save from the grid's ``columnState`` (the selection column left out); with ``sized``, only
    those columns' widths are kept (the others fit their content)."""
    return [{"colId": item["colId"], "width": item.get("width") if sized is None or item["colId"] in sized else None,
             "hide": bool(item.get("hide"))}
            for item in column_state if item.get("colId") and not str(item["colId"]).startswith("ag-Grid-")]


def sort_argument(sort_model: Sequence[Mapping[str, Any]] | None) -> str | None:
    """The store's ``sort`` for the grid's sort model (its first column; unknown ids are dotted paths)."""
    for item in sort_model or []:
        key = _SORT_KEYS.get(item.get("colId"), item.get("colId"))
        if key:
            return ("-" if item.get("sort") == "desc" else "") + key
    return None


def combined_filter(status: str | None, text: str | None) -> str:
    """The query-language filter for a status quick-filter and a typed query."""
    parts = []
    if status:
        parts.append(f"status == {status}")
    if text and text.strip():
        parts.append(f"({text.strip()})")
    return " and ".join(parts)


def metric_request(columns: Iterable[MetricColumn]) -> dict[str, list[str]]:
    """The store's ``metrics`` argument for the table's metric columns."""
    request: dict[str, list[str]] = {}
    for column in columns:
        request.setdefault(column.metric, []).append(column.rollup)
    return request


def spec(settings: BoardSettings) -> dict[str, list]:
    """What a rows request needs of the settings, as JSON for a ``dcc.Store``."""
    return {"metrics": [[c.metric, c.rollup, c.name] for c in settings.metric_columns],
            "custom": [[c.path, c.name] for c in settings.custom_columns], "sparklines": list(settings.sparklines)}


def settings_from_spec(data: Mapping[str, list] | None) -> BoardSettings:
    """The columns part of the settings :func:`spec` was made from (no layout)."""
    metrics, custom = from_spec(data)
    return BoardSettings(tuple(metrics), tuple(custom), (), tuple((data or {}).get("sparklines") or ()))


def from_spec(data: Mapping[str, list] | None) -> tuple[list[MetricColumn], list[CustomColumn]]:
    """Inverse of :func:`spec`."""
    data = data or {}
    return ([MetricColumn(*item) for item in data.get("metrics", [])],
            [CustomColumn(*item) for item in data.get("custom", [])])


def add_sparklines(rows: list[dict[str, Any]], lines: pd.DataFrame) -> None:
    """Put each row's sparklines (a :meth:`RunStore.sparklines` frame) in its sparkline columns, as
    ``[[step, value], ...]``."""
    for row in rows:
        for metric in lines.columns:
            points = lines.at[row["id"], metric] if row.get("id") in lines.index else []
            row[spark_id(metric)] = [[step, value] for step, value in points]


def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe rows of a :meth:`RunStore.runs` frame: times as ISO strings, NaN as null, objects as text."""
    if frame.empty:
        return []
    text = frame.reset_index().to_json(orient="records", date_format="iso", date_unit="s", default_handler=str)
    return json.loads(text)


def parse_tags(value: Any) -> list[str]:
    """Tags from an edited cell: a list, or text separated by commas."""
    items = value if isinstance(value, list) else str(value or "").split(",")
    tags: list[str] = []
    for item in items:
        tag = str(item).strip()
        if tag and tag not in tags:
            tags.append(tag)
    return tags
