"""Run comparison (route ``/compare?runs=1,2,3``): metrics overlaid with legends built from chosen config keys, a
config diff of the keys that differ, parallel coordinates of config values against a rolled-up metric, and GPU
utilization and memory of every run overlaid.

``layout(search)`` builds the page's components only; :func:`load` (fired on page load by the store of the run ids)
reads the runs and fills them; setting the legend's keys then draws the metric panels (:func:`draw_metrics`) and
setting the parallel coordinates' metric draws them (:func:`draw_parcoords`). The work is done in
:mod:`dashboard.compare_actions`; the callbacks read the board they serve with :func:`current_board`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

import pandas as pd
from dash import ALL, Input, Output, State, dcc, html, no_update

from dashboard import compare_actions as actions
from dashboard import figures
from dashboard.board import current_board, run_key
from dashboard.compare_figures import parcoords_figure, text
from sacred_gpu.read import ROLLUPS, ReadError

logger = logging.getLogger(__name__)

RUNS = "compare-runs"  # dcc.Store: the compared run ids (from the URL)
TITLE = "compare-title"
COMPARED = "compare-compared"  # the compared runs' links, and the ids not found
LEGEND = "compare-legend"
X_MODE = "compare-x"
SMOOTHING = "compare-smoothing"
METRICS = "compare-metrics"  # the metric panels
METRIC = "compare-metric"  # pattern id type: {"type": METRIC, "name": <metric>}
DIFF = "compare-diff"
PAR_METRIC = "compare-par-metric"
PAR_ROLLUP = "compare-par-rollup"
PARCOORDS = "compare-parcoords"
GPU = "compare-gpu"  # the GPU overlays
MAX_RUNS = 20
GRAPH_CONFIG = {"displaylogo": False}
LOADING = "loading…"


def parse_run_ids(search: str | None) -> list[Any]:
    """Run ids from a query string ``?runs=1,2,3`` (integers where they look like integers), at most
    :data:`MAX_RUNS`, duplicates dropped. Raises ``ValueError`` when none is given."""
    values = parse_qs((search or "").lstrip("?")).get("runs", [])
    ids: list[Any] = []
    for part in ",".join(values).split(","):
        part = part.strip()
        if part:
            key = run_key(part)
            if key not in ids:
                ids.append(key)
    if not ids:
        raise ValueError("no runs to compare: select runs in the table, or open /compare?runs=1,2,3")
    return ids[:MAX_RUNS]


def compare_url(run_ids: Sequence[Any]) -> str:
    """The URL comparing ``run_ids``."""
    return "/compare?runs=" + ",".join(str(run_id) for run_id in run_ids)


def layout(search: str | None) -> html.Div:
    """The comparison page for the runs named in ``search``: its components, empty until :func:`load` fills them
    (no database work here)."""
    try:
        run_ids = parse_run_ids(search)
    except ValueError as error:
        return html.Div([html.H2("Compare runs"), html.P(str(error)), dcc.Link("All runs", href="/")])
    return html.Div(className="compare-page", children=[
        dcc.Link("← All runs", href="/"),
        html.H2("Compare runs", id=TITLE),
        html.Div(html.P(LOADING, className="note"), id=COMPARED),
        dcc.Store(id=RUNS, data=run_ids),
        html.H3("Metrics"),
        html.Div(className="toolbar", children=[
            html.Label("Legend from config"),
            dcc.Dropdown(id=LEGEND, options=[], multi=True, style={"minWidth": "20em"}),
            dcc.RadioItems(id=X_MODE, options=[{"label": v, "value": k} for k, v in figures.X_MODES.items()],
                           value="step", inline=True),
            html.Label("Smoothing"),
            html.Div(dcc.Slider(id=SMOOTHING, min=0, max=0.99, step=0.01, value=0, marks=None,
                                tooltip={"placement": "bottom"}), style={"width": "14em"}),
        ]),
        html.Div(id=METRICS, className="panels"),
        html.H3("Config: keys that differ"),
        html.Div(id=DIFF),
        html.H3("Parallel coordinates"),
        html.Div(className="toolbar", children=[
            html.Label("Metric"),
            dcc.Dropdown(id=PAR_METRIC, options=[], style={"minWidth": "14em"}),
            dcc.Dropdown(id=PAR_ROLLUP, options=list(ROLLUPS), value="min", clearable=False,
                         style={"minWidth": "8em"}),
        ]),
        dcc.Graph(id=PARCOORDS, config=GRAPH_CONFIG),
        html.H3("GPU"),
        html.Div(id=GPU, className="panels"),
    ])


def load(run_ids: list) -> tuple:
    """Fired on page load: read the compared runs once and fill the page (title, runs, legend choices, the metric
    panels to draw, config diff, the parallel coordinates' metrics, GPU overlays)."""
    try:
        compared = actions.read_compared(current_board().store, run_ids)
        overlays, without = actions.gpu_overlays(current_board().store, compared.runs)
    except ReadError as error:
        logger.warning("compare %s: %s", run_ids, error)
        message = html.P(f"MongoDB cannot be read: {error}. Reload the page to try again.", className="error")
        return ("Compare runs", message, [], no_update, [], None, [], None, None)
    table, keys, names = compared.table, compared.keys, compared.metric_names
    runs = [html.P(f"not found: {', '.join(map(str, compared.missing))}", className="error")] \
        if compared.missing else []
    runs.append(html.Ul([html.Li([dcc.Link(f"#{run_id}", href=f"/run/{run_id}"), f" {row['experiment']} ",
                                  html.Span(row["status"], className=f"status status-{row['status']}")])
                         for run_id, row in table.iterrows()], className="compared"))
    metrics = [html.Div([html.H4(name), dcc.Graph(id={"type": METRIC, "name": name}, config=GRAPH_CONFIG)])
               for name in names] or [html.P("These runs logged no metrics.")]
    diff = _diff_table(compared.diff) if len(compared.diff) else html.P("The runs' configs are identical.")
    gpu = [html.Div([html.H4(title), dcc.Graph(figure=figure, config=GRAPH_CONFIG)], className="wide")
           for title, figure in overlays.items()]
    if without:
        gpu.append(html.P(f"no GPU data for {', '.join(f'#{run_id}' for run_id in without)}", className="note"))
    return (f"Compare {len(table)} runs", runs, keys, keys[:2], metrics, diff, names, names[0] if names else None,
            gpu)


def draw_metrics(keys: list | None, x_mode: str, smoothing: float | None, run_ids: list, ids: list) -> list:
    """Draw every metric panel (legend from the config ``keys``, x in ``x_mode``, EMA ``smoothing``)."""
    if not ids:
        return []
    store = current_board().store
    try:
        table = store.runs(ids=run_ids, sort="id")
        figs = actions.metric_figures(store, actions.contexts(store, table), actions.legend_labels(table, keys or []),
                                      x_mode or "step", float(smoothing or 0.0))
    except ReadError as error:
        logger.warning("compare %s: %s", run_ids, error)
        return [no_update for _ in ids]
    return [figs.get(item["name"], no_update) for item in ids]


def draw_parcoords(metric: str | None, rollup: str, run_ids: list) -> Any:
    """Parallel coordinates of the differing config values against ``metric``'s ``rollup``."""
    wanted = {metric: rollup} if metric and rollup in ROLLUPS else None
    try:
        table = current_board().store.runs(ids=run_ids, sort="id", metrics=wanted)
    except ReadError as error:
        logger.warning("compare %s: %s", run_ids, error)
        return no_update
    return parcoords_figure(table, list(actions.config_diff(table).index), f"{metric}.{rollup}" if wanted else None)


def _diff_table(diff: pd.DataFrame) -> html.Table:
    header = html.Tr([html.Th("key")] + [html.Th(f"#{run_id}") for run_id in diff.columns])
    rows = [html.Tr([html.Td(key)] + [html.Td(text(value)) for value in values])
            for key, values in diff.iterrows()]
    return html.Table([html.Thead(header), html.Tbody(rows)], className="config-diff", id="compare-config-diff")


def register(app: Any) -> None:
    """Register the page's callbacks on ``app``."""
    app.callback(Output(TITLE, "children"), Output(COMPARED, "children"), Output(LEGEND, "options"),
                 Output(LEGEND, "value"), Output(METRICS, "children"), Output(DIFF, "children"),
                 Output(PAR_METRIC, "options"), Output(PAR_METRIC, "value"), Output(GPU, "children"),
                 Input(RUNS, "data"))(load)
    app.callback(Output({"type": METRIC, "name": ALL}, "figure"), Input(LEGEND, "value"), Input(X_MODE, "value"),
                 Input(SMOOTHING, "value"), State(RUNS, "data"), State({"type": METRIC, "name": ALL}, "id"),
                 prevent_initial_call=True)(draw_metrics)
    app.callback(Output(PARCOORDS, "figure"), Input(PAR_METRIC, "value"), Input(PAR_ROLLUP, "value"),
                 State(RUNS, "data"), prevent_initial_call=True)(draw_parcoords)

