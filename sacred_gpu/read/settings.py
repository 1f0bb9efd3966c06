"""The runs table's settings, kept per database so every browser sees the same table: metric and custom columns
(shared with Omniboard where it has them) and the column layout."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sacred_gpu import schema
from sacred_gpu.read.errors import BadQuery
from sacred_gpu.read.query import PREFIXES


@dataclass(frozen=True)
class MetricColumn:
    """A rolled-up metric column of the runs table: ``rollup`` (one of :data:`ROLLUPS`) of the series ``metric``."""

    metric: str
    rollup: str
    name: str = ""

    @property
    def key(self) -> str:
        """The column's name in :meth:`RunStore.runs` frames: ``metric.rollup``."""
        return f"{self.metric}.{self.rollup}"


@dataclass(frozen=True)
class CustomColumn:
    """A column showing the value at a dotted ``path`` of the run document (``config.optimizer.lr``, ``host.cpu``)."""

    path: str
    name: str = ""


@dataclass(frozen=True)
class BoardSettings:
    """The runs table's settings, kept per database so every browser sees the same table."""

    metric_columns: tuple[MetricColumn, ...] = ()
    custom_columns: tuple[CustomColumn, ...] = ()
    #: Column order, widths and visibility: ``[{"colId", "width", "hide"}]`` in display order.
    layout: tuple[dict, ...] = ()
    #: Metrics shown as a sparkline column (a small line of the series' history per row).
    sparklines: tuple[str, ...] = ()


def _run_path(config_path: str) -> str:
    """A path in the run document from an Omniboard ``config_path`` (relative to ``config`` unless it names a
    top-level part of the run)."""
    return config_path if config_path.split(".")[0] in PREFIXES | {"result", "status", "command"} \
        else f"config.{config_path}"


class SettingsReads:
    """The settings reads and writes of :class:`~sacred_gpu.read.store.RunStore`, which sets the database and the
    writer."""

    database: Any
    _writer: Any

    def board_settings(self) -> BoardSettings:
        """The runs table's settings: metric columns (Omniboard's ``omniboard.metric.columns`` plus roll-ups Omniboard
        lacks), custom columns (Omniboard's ``omniboard.custom.columns``) and the column layout."""
        from_omniboard = {extrema: rollup for rollup, extrema in schema.OMNIBOARD_EXTREMA.items()}
        metric_columns = [MetricColumn(doc["metric_name"], from_omniboard[doc["extrema"]], doc.get("name") or "")
                          for doc in self.database[schema.OMNIBOARD_METRIC_COLUMNS].find({}).sort("_id", 1)
                          if doc.get("extrema") in from_omniboard and isinstance(doc.get("metric_name"), str)]
        own = {doc["_id"]: doc.get("value") for doc in self.database[schema.BOARD_SETTINGS].find({})}
        metric_columns += [MetricColumn(**column) for column in own.get("metric_columns") or []]
        custom_columns = [CustomColumn(_run_path(doc["config_path"]), doc.get("name") or "")
                          for doc in self.database[schema.OMNIBOARD_CUSTOM_COLUMNS].find({}).sort("_id", 1)
                          if isinstance(doc.get("config_path"), str) and doc["config_path"]]
        sparklines = tuple(name for name in own.get("sparklines") or [] if isinstance(name, str))
        return BoardSettings(tuple(metric_columns), tuple(custom_columns), tuple(own.get("layout") or ()), sparklines)

    def save_metric_columns(self, columns: Iterable[MetricColumn]) -> None:
        """Replace the table's metric columns; those Omniboard understands are written where Omniboard reads them."""
        shared, own = [], []
        for column in columns:
            if column.rollup not in schema.ROLLUPS:
                raise BadQuery(f"unknown roll-up {column.rollup!r}; choose from {', '.join(schema.ROLLUPS)}")
            if column.rollup in schema.OMNIBOARD_EXTREMA:
                shared.append({"name": column.name or column.key, "metric_name": column.metric,
                               "extrema": schema.OMNIBOARD_EXTREMA[column.rollup]})
            else:
                own.append({"metric": column.metric, "rollup": column.rollup, "name": column.name})
        self._writer.replace_documents(schema.OMNIBOARD_METRIC_COLUMNS, shared)
        self._writer.set_board_setting("metric_columns", own)

    def save_custom_columns(self, columns: Iterable[CustomColumn]) -> None:
        """Replace the table's custom columns (Omniboard's ``omniboard.custom.columns``)."""
        docs = []
        for column in columns:
            if not column.path or "$" in column.path or column.path.startswith(".") or ".." in column.path:
                raise BadQuery(f"invalid column path {column.path!r}")
            docs.append({"name": column.name or column.path, "config_path": column.path.removeprefix("config.")})
        self._writer.replace_documents(schema.OMNIBOARD_CUSTOM_COLUMNS, docs)

    def save_sparklines(self, metrics: Iterable[str]) -> None:
        """Replace the metrics the table shows as sparkline columns (sacred-board's own setting)."""
        names = [str(name) for name in metrics]
        if not all(names):
            raise BadQuery("a sparkline needs a metric name")
        self._writer.set_board_setting("sparklines", list(dict.fromkeys(names)))

    def save_layout(self, layout: Iterable[Mapping[str, Any]]) -> None:
        """Store the column order, widths and visibility: ``[{"colId", "width", "hide"}]`` in display order."""
        self._writer.set_board_setting("layout", [
            {"colId": str(item["colId"]), "width": item.get("width"), "hide": bool(item.get("hide"))}
            for item in layout if item.get("colId")])

