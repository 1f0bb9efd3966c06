"""Run comparison (route ``/compare?runs=1,2,3``): metrics overlaid with legends built from chosen config keys, a
config diff of the keys that differ, parallel coordinates of config values against a rolled-up metric, and GPU
utilization side by side. Everything is read through the store; the figures come from :mod:`dashboard.figures`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs

import pandas as pd
import plotly.graph_objects as go
from dash import ALL, Input, Output, State, dcc, html, no_update

from dashboard import figures, run_plots
from dashboard.board import Board, run_key
from sacred_gpu.read import ROLLUPS, RunStore, context_time, system_panels

logger = logging.getLogger(__name__)

RUNS = "compare-runs"  # dcc.Store: the compared run ids
LEGEND = "compare-legend"
X_MODE = "compare-x"
SMOOTHING = "compare-smoothing"
METRIC = "compare-metric"  # pattern id type: {"type": METRIC, "name": <metric>}
PAR_METRIC = "compare-par-metric"
PAR_ROLLUP = "compare-par-rollup"
PARCOORDS = "compare-parcoords"
MAX_RUNS = 20
GRAPH_CONFIG = {"displaylogo": False}


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


def config_diff(table: pd.DataFrame) -> pd.DataFrame:
    """The ``config.*`` columns whose values differ between the runs of ``table`` (a :meth:`RunStore.runs` frame),
    as a frame indexed by config key with one column per run."""
    config = table[[c for c in table.columns if c.startswith("config.")]]
    differing = [c for c in config.columns if config[c].map(repr).nunique(dropna=False) > 1]
    return config[differing].T.rename(index=lambda key: key.removeprefix("config."))


def legend_labels(table: pd.DataFrame, keys: Sequence[str]) -> dict[Any, str]:
    """``{run id: "#id key=value ..."}`` from the chosen config ``keys`` (without the ``config.`` prefix)."""
    labels = {}
    for run_id, row in table.iterrows():
        parts = [f"{key}={_text(row.get('config.' + key))}" for key in keys]
        labels[run_id] = " ".join([f"#{run_id}", *parts])
    return labels


def parcoords_figure(table: pd.DataFrame, keys: Sequence[str], metric_column: str | None) -> go.Figure:
    """Parallel coordinates: one axis per config key (text values as categories), the last one ``metric_column``
    (a rolled-up metric), lines coloured by it."""
    dimensions = []
    for key in keys:
        values = table.get("config." + key)
        if values is None:
            continue
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().all():
            dimensions.append({"label": key, "values": numeric.tolist()})
        else:
            texts = values.map(_text)
            categories = sorted(set(texts))
            dimensions.append({"label": key, "values": [categories.index(t) for t in texts],
                               "tickvals": list(range(len(categories))), "ticktext": categories})
    line: dict[str, Any] = {}
    if metric_column and metric_column in table:
        values = pd.to_numeric(table[metric_column], errors="coerce")
        dimensions.append({"label": metric_column, "values": values.tolist()})
        line = {"color": values.fillna(values.min() if values.notna().any() else 0).tolist(),
                "colorscale": "Viridis", "showscale": True}
    figure = go.Figure(go.Parcoords(dimensions=dimensions, line=line) if dimensions else None)
    figure.update_layout(height=360, margin={"l": 60, "r": 60, "t": 50, "b": 30})
    if not dimensions:
        figure.add_annotation(text="the compared runs have no differing config values", showarrow=False)
    return figure


def contexts(store: RunStore, table: pd.DataFrame) -> dict[Any, dict[str, Any]]:
    """Per compared run, what its plots need (:attr:`sacred_gpu.read.RunPlots.context`)."""
    return {run_id: store.run_plots(run_id).context for run_id in table.index}


def metric_figures(store: RunStore, runs: Mapping[Any, Mapping[str, Any]], labels: Mapping[Any, str], x_mode: str,
                   smoothing: float) -> dict[str, go.Figure]:
    """One overlaid figure per user metric of the compared runs (overviews: never every point of long series)."""
    lines: dict[str, list[figures.Line]] = {}
    for run_id, run in runs.items():
        if not run["metric_names"]:
            continue
        series = store.metric_overview(run_id, run["metric_names"], timestamps=x_mode != "step")
        start = context_time(run["start"])
        for name, frame in series.groupby("name", sort=True):
            lines.setdefault(str(name), []).append(figures.Line(labels.get(run_id, f"#{run_id}"), frame, start))
    return {name: figures.metric_figure(group, x_mode=x_mode, smoothing=smoothing, revision=f"{name}-{x_mode}")
            for name, group in sorted(lines.items())}


def gpu_figures(board: Board, runs: Mapping[Any, Mapping[str, Any]]) -> list[tuple[Any, go.Figure | None]]:
    """Per run, its GPU utilization over time since its start (``None``: the run has no GPU data), drawn as the run
    page draws it (every sample, or the heartbeat windows of long runs: peaks kept)."""
    found: list[tuple[Any, go.Figure | None]] = []
    for run_id, run in runs.items():
        has_gpu = any(p.key == "gpu-util" for p in system_panels(run["system_names"]))
        found.append((run_id, run_plots.system_figures(board, run, ["gpu-util"], "elapsed")[0] if has_gpu else None))
    return found


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def layout(board: Board, search: str | None) -> html.Div:
    """The comparison page for the runs named in ``search``."""
    try:
        run_ids = parse_run_ids(search)
    except ValueError as error:
        return html.Div([html.H2("Compare runs"), html.P(str(error)), dcc.Link("All runs", href="/")])
    table = board.store.runs(ids=run_ids, sort="id")
    missing = [run_id for run_id in run_ids if run_id not in table.index]
    diff = config_diff(table)
    keys = list(diff.index)
    labels = legend_labels(table, keys[:2])
    runs = contexts(board.store, table)
    metric_names = sorted({name for run in runs.values() for name in run["metric_names"]})
    figs = metric_figures(board.store, runs, labels, "step", 0.0)
    return html.Div(className="compare-page", children=[
        dcc.Link("← All runs", href="/"),
        html.H2(f"Compare {len(table)} runs"),
        html.P(f"not found: {', '.join(map(str, missing))}", className="error") if missing else None,
        html.Ul([html.Li([dcc.Link(f"#{run_id}", href=f"/run/{run_id}"), f" {row['experiment']} ",
                          html.Span(row["status"], className=f"status status-{row['status']}")])
                 for run_id, row in table.iterrows()], className="compared"),
        dcc.Store(id=RUNS, data=list(table.index)),
        html.H3("Metrics"),
        html.Div(className="toolbar", children=[
            html.Label("Legend from config"),
            dcc.Dropdown(id=LEGEND, options=keys, value=keys[:2], multi=True, style={"minWidth": "20em"}),
            dcc.RadioItems(id=X_MODE, options=[{"label": v, "value": k} for k, v in figures.X_MODES.items()],
                           value="step", inline=True),
            html.Label("Smoothing"),
            html.Div(dcc.Slider(id=SMOOTHING, min=0, max=0.99, step=0.01, value=0, marks=None,
                                tooltip={"placement": "bottom"}), style={"width": "14em"}),
        ]),
        html.Div([html.Div([html.H4(name), dcc.Graph(id={"type": METRIC, "name": name}, figure=figure,
                                                     config=GRAPH_CONFIG)])
                  for name, figure in figs.items()] or [html.P("These runs logged no metrics.")],
                 className="panels"),
        html.H3("Config: keys that differ"),
        _diff_table(diff) if len(diff) else html.P("The runs' configs are identical."),
        html.H3("Parallel coordinates"),
        html.Div(className="toolbar", children=[
            html.Label("Metric"),
            dcc.Dropdown(id=PAR_METRIC, options=metric_names, value=metric_names[0] if metric_names else None,
                         style={"minWidth": "14em"}),
            dcc.Dropdown(id=PAR_ROLLUP, options=list(ROLLUPS), value="min", clearable=False,
                         style={"minWidth": "8em"}),
        ]),
        dcc.Graph(id=PARCOORDS, config=GRAPH_CONFIG),
        html.H3("GPU utilization"),
        html.Div([html.Div([html.H4(f"#{run_id}"), dcc.Graph(figure=figure, config=GRAPH_CONFIG) if figure
                            else html.P("no GPU data for this run", className="note")])
                  for run_id, figure in gpu_figures(board, runs)], className="panels"),
    ])


def _diff_table(diff: pd.DataFrame) -> html.Table:
    header = html.Tr([html.Th("key")] + [html.Th(f"#{run_id}") for run_id in diff.columns])
    rows = [html.Tr([html.Td(key)] + [html.Td(_text(value)) for value in values])
            for key, values in diff.iterrows()]
    return html.Table([html.Thead(header), html.Tbody(rows)], className="config-diff", id="compare-config-diff")


def register(app: Any, board: Board) -> None:
    """Register the page's callbacks on ``app``."""

    @app.callback(Output({"type": METRIC, "name": ALL}, "figure"), Input(LEGEND, "value"), Input(X_MODE, "value"),
                  Input(SMOOTHING, "value"), State(RUNS, "data"), State({"type": METRIC, "name": ALL}, "id"),
                  prevent_initial_call=True)
    def _metrics(keys: list | None, x_mode: str, smoothing: float, run_ids: list, ids: list) -> list:
        table = board.store.runs(ids=run_ids, sort="id")
        figs = metric_figures(board.store, contexts(board.store, table), legend_labels(table, keys or []), x_mode,
                              smoothing or 0.0)
        return [figs.get(item["name"], no_update) for item in ids]

    @app.callback(Output(PARCOORDS, "figure"), Input(PAR_METRIC, "value"), Input(PAR_ROLLUP, "value"),
                  Input(RUNS, "data"))
    def _parcoords(metric: str | None, rollup: str, run_ids: list) -> go.Figure:
        wanted = {metric: rollup} if metric and rollup in ROLLUPS else None
        table = board.store.runs(ids=run_ids, sort="id", metrics=wanted)
        keys = list(config_diff(table).index)
        return parcoords_figure(table, keys, f"{metric}.{rollup}" if wanted else None)
