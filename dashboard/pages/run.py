"""A run's page (route ``/run/<id>``): its id, status, experiment and config. The drill-down (metrics, GPU plots,
output, sources, artifacts) is built on this route by the run-page issue."""

from __future__ import annotations

import json
from typing import Any

from dash import dcc, html

from dashboard.board import Board


def layout(board: Board, run_id: str) -> html.Div:
    """The run's page, or a clear message when there is no such run."""
    key: Any = int(run_id) if run_id.lstrip("-").isdigit() else run_id
    frame = board.store.runs({"_id": key}, limit=1)
    if frame.empty:
        return html.Div([html.H2("No such run"), html.P(f"There is no run {run_id!s} in this database."),
                         dcc.Link("All runs", href="/")], className="run-page")
    row = frame.iloc[0]
    doc = board.store.run(key)
    return html.Div(className="run-page", children=[
        dcc.Link("← All runs", href="/"),
        html.H2([f"Run {key} ", html.Span(row["status"], className=f"status status-{row['status']}")]),
        html.Dl([html.Dt("Experiment"), html.Dd(str(row["experiment"])),
                 html.Dt("Host"), html.Dd(str(row.get("host") or "")),
                 html.Dt("Started (UTC)"), html.Dd(str(row.get("start") or ""))]),
        html.H3("Config"),
        html.Pre(json.dumps(doc.get("config") or {}, indent=2, sort_keys=True, default=str), id="run-config"),
    ])
