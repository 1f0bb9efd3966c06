"""Every panel's data as CSV, from the board's server: a metric's points at full resolution (``step``,
``timestamp``, ``value``), or a system panel's samples (``time`` and one column per series), streamed as an
attachment. Links, not callbacks: a download of millions of points never passes through a Dash response."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pandas as pd
from flask import Response, request

from dashboard.board import current_board, run_key
from sacred_gpu.read import NotFound, ReadError, system_panels

METRIC_ROUTE = "/download/run/<run_id>/metric.csv"
SYSTEM_ROUTE = "/download/run/<run_id>/system.csv"
#: Rows written per chunk of the response.
CHUNK_ROWS = 50_000


def metric_url(run_id: Any, name: str) -> str:
    """The URL of metric ``name``'s points as CSV."""
    return f"/download/run/{quote(str(run_id), safe='')}/metric.csv?name={quote(name, safe='')}"


def system_url(run_id: Any, panel: str) -> str:
    """The URL of the samples a system panel draws, as CSV."""
    return f"/download/run/{quote(str(run_id), safe='')}/system.csv?panel={quote(panel, safe='')}"


def metric_csv(run_id: str) -> Response:
    """Route :data:`METRIC_ROUTE`: metric ``?name=`` of the run, every point."""
    name = request.args.get("name", "")
    key = run_key(run_id)
    try:
        frame = current_board().store.metrics(key, name)
    except NotFound:
        return _missing(f"there is no run {run_id}")
    except ReadError as error:
        return Response(f"{error}\n", 503, mimetype="text/plain")
    if frame.empty:
        return _missing(f"run {run_id} has no metric {name!r}")
    return _attachment(frame[["step", "timestamp", "value"]], f"run-{run_id}-{name}.csv", index=False)


def system_csv(run_id: str) -> Response:
    """Route :data:`SYSTEM_ROUTE`: every sample of the series of system panel ``?panel=``."""
    wanted = request.args.get("panel", "")
    key = run_key(run_id)
    try:
        board = current_board()
        names = board.store.run_plots(key).context["system_names"]
        panel = next((panel for panel in system_panels(names) if panel.key == wanted), None)
        if panel is None:
            return _missing(f"run {run_id} has no system panel {wanted!r}")
        samples = board.store.system(key)
    except NotFound:
        return _missing(f"there is no run {run_id}")
    except ReadError as error:
        return Response(f"{error}\n", 503, mimetype="text/plain")
    columns = [column for column in panel.columns if column in samples.columns]
    frame = samples[columns].rename(columns=panel.columns)
    frame.index.name = "time"
    return _attachment(frame, f"run-{run_id}-{wanted}.csv", index=True)


def _missing(text: str) -> Response:
    return Response(text + "\n", 404, mimetype="text/plain")


def _attachment(frame: pd.DataFrame, filename: str, index: bool) -> Response:
    def chunks() -> Iterator[str]:
        for first in range(0, max(len(frame), 1), CHUNK_ROWS):
            yield frame.iloc[first:first + CHUNK_ROWS].to_csv(index=index, header=first == 0)

    safe = quote(filename.replace("/", "_"), safe="")
    return Response(chunks(), mimetype="text/csv", headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{safe}", "X-Content-Type-Options": "nosniff"})


def register(server: Any) -> None:
    """Add the routes to the board's Flask ``server``."""
    server.add_url_rule(METRIC_ROUTE, "run_metric_csv", metric_csv)
    server.add_url_rule(SYSTEM_ROUTE, "run_system_csv", system_csv)
