"""The run page's metric and system plots: ``layout(board, run_id)`` builds them, ``register(app, board)`` their
callbacks, whose work is done by :func:`metric_panel` and :func:`system_figures` (plain functions the tests call).

Metrics: one panel per user metric, read as an overview (:meth:`RunStore.metric_overview`: never every point of a
long series) and, when a panel is zoomed, at full resolution over the zoomed range (:meth:`RunStore.metric_range`).
GPU and host: panels per quantity (one line per GPU), from every sample where the run has few enough, else from the
heartbeat windows of Sacred's ``sys/...`` series, with every sample of a zoomed range; all system panels zoom
together. The run's system roll-ups are shown in a table. While the run is RUNNING its document is re-read every
``board.refresh`` seconds and every plot is redrawn from it, keeping its x axis, zoom and smoothing; a metric
logged for the first time gets its panel.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import ALL, MATCH, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dashboard import figures
from dashboard import run_parts as parts
from dashboard.board import Board, run_key
from sacred_gpu.read import NotFound, Panel, ReadError, RunPlots, context_time, system_panels

logger = logging.getLogger(__name__)

X_MODE = "run-plots-x"
SMOOTHING = "run-plots-smoothing"
LOG_Y = "run-plots-log"
RUN = "run-plots-run"  # dcc.Store: what the callbacks need to know of the run
TICK = "run-plots-tick"  # dcc.Interval: re-reads a running run, which redraws its plots
SYSTEM_ZOOM = "run-plots-system-zoom"  # dcc.Store: the x range the system panels show (None: the whole run)
METRICS = "run-plots-metrics"  # the metric panels; a running run's new metrics join them
SHOWN = "run-plots-shown"  # dcc.Store: the metric names that have a panel
METRIC = "run-plots-metric"  # pattern id type: {"type": METRIC, "name": <metric>}
METRIC_ZOOM = "run-plots-metric-zoom"  # dcc.Store per metric panel: the x range it shows (None: the whole series)
SYSTEM = "run-plots-system"  # pattern id type: {"type": SYSTEM, "panel": <panel key>}
GRAPH_CONFIG = {"displaylogo": False, "scrollZoom": False}
GRID = {"display": "grid", "gridTemplateColumns": "repeat(auto-fill, minmax(520px, 1fr))", "gap": "12px"}


def layout(board: Board, run_id: str | int, view: RunPlots | None = None) -> html.Div:
    """The metrics and system sections of run ``run_id``'s page (``view``: its plots' view, where the page read it)."""
    if view is None:
        try:
            view = board.store.run_plots(run_key(str(run_id)))
        except NotFound:
            return html.Div(f"There is no run {run_id!s} in this database.", className="run-plots")
    run, system = view.context, view.system
    user, system_names = run["metric_names"], run["system_names"]
    controls = html.Div(className="toolbar run-plots-controls", children=[
        html.Label("x axis"),
        dcc.RadioItems(id=X_MODE, value="step", inline=True,
                       options=[{"label": "step", "value": "step"}, {"label": "wall time", "value": "wall"},
                                {"label": "time since start", "value": "elapsed"}]),
        html.Label("smoothing (EMA)"),
        html.Div(dcc.Slider(id=SMOOTHING, min=0, max=0.99, step=0.01, value=0, updatemode="mouseup",
                            marks={0: "0", 0.5: "0.5", 0.9: "0.9", 0.99: "0.99"},
                            tooltip={"placement": "bottom"}), style={"width": "260px"}),
        dcc.Checklist(id=LOG_Y, options=[{"label": "log y", "value": "log"}], value=[], inline=True),
    ])
    panels = system_panels(system_names)
    return html.Div(className="run-plots", children=[
        dcc.Store(id=RUN, data=run),
        dcc.Interval(id=TICK, interval=int(board.refresh * 1000), disabled=not run["running"]),
        dcc.Store(id=SYSTEM_ZOOM),
        html.H4("Metrics"), controls,
        dcc.Store(id=SHOWN, data=user), html.Div(metric_panels(user), id=METRICS, style=GRID),
        html.H4("GPU and system"),
        *parts.system_notes(system, panels),
        parts.rollup_tables(system),
        html.Div([_graph(panel.title, {"type": SYSTEM, "panel": panel.key}, panel.unit) for panel in panels],
                 style=GRID),
    ])


def metric_panels(names: Sequence[str], drawn: Mapping[str, go.Figure] | None = None,
                  zooms: Mapping[str, list] | None = None) -> list[Any]:
    """One panel per metric, its figure from ``drawn`` or else from the metric callback, the x range it shows from
    ``zooms``; or a note that there are none."""
    if not names:
        return [html.P("This run logged no metrics.", className="note")]
    panels = []
    for name in names:
        panel = _graph(name, {"type": METRIC, "name": name}, figure=(drawn or {}).get(name))
        panel.children.append(dcc.Store(id={"type": METRIC_ZOOM, "name": name}, data=(zooms or {}).get(name)))
        panels.append(panel)
    return panels


def _graph(title: str, graph_id: dict, unit: str = "", figure: go.Figure | None = None) -> html.Div:
    extra = {"figure": figure} if figure is not None else {}
    return html.Div(className="run-plot", children=[
        html.H5(f"{title} ({unit})" if unit else title),
        dcc.Loading(dcc.Graph(id=graph_id, config=GRAPH_CONFIG, style={"height": f"{figures.HEIGHT}px"}, **extra),
                    type="dot", delay_show=300, overlay_style={"visibility": "visible", "opacity": 0.6}),
    ])


# -- what the callbacks do, as plain functions ----------------------------------------------------------------------
def refreshed_context(board: Board, run: Mapping[str, Any]) -> dict[str, Any] | None:
    """The plot context of a running run re-read (new points, samples, its end), or None where nothing changed
    (the plots are then left as they are). NotFound where the run is gone."""
    fresh = board.store.run_plots(run["run_id"]).context
    return None if fresh == run else fresh


def parse_relayout(relayout: Mapping[str, Any] | None) -> tuple[Any, Any] | str | None:
    """The x range a Plotly relayout event sets: ``(low, high)``, ``"reset"`` (autorange), or None (no x change)."""
    if not relayout:
        return None
    if "xaxis.range[0]" in relayout and "xaxis.range[1]" in relayout:
        return relayout["xaxis.range[0]"], relayout["xaxis.range[1]"]
    if isinstance(relayout.get("xaxis.range"), (list, tuple)) and len(relayout["xaxis.range"]) == 2:
        return tuple(relayout["xaxis.range"])
    if relayout.get("xaxis.autorange"):
        return "reset"
    return None


def zoom_to_draw(triggered: Mapping[str, Any], relayouts: Sequence[tuple[Any, Mapping[str, Any] | None]],
                 shown: Sequence[Any] | None) -> tuple[Any, Any] | str | None:
    """The x range a plot callback draws (x-mode units; "reset" or None: the whole run).

    ``triggered``: ``ctx.triggered_prop_ids``, what set the callback off (several inputs where Dash merged triggers
    that came together, an x-mode click and Plotly's autosize relayout say; none on a first call); ``relayouts``:
    ``(graph id, relayoutData)`` of the panels it draws; ``shown``: the range they show. An x-mode change wins (a
    range in the old mode's units means nothing now), then a relayout that sets x, then the range shown. Raises
    PreventUpdate where only relayouts that leave x alone (autosize, a y-only zoom) set it off.
    """
    if f"{X_MODE}.value" in triggered:
        return None
    moved = [graph for key, graph in triggered.items() if key.endswith(".relayoutData")]
    for graph, relayout in relayouts:
        if graph in moved and (zoom := parse_relayout(relayout)) is not None:
            return zoom
    if moved and len(moved) == len(triggered):
        raise PreventUpdate
    return tuple(shown) if shown else None


def _time_bounds(zoom: tuple[Any, Any], x_mode: str, start: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    """A zoomed x range of a time axis (wall-time strings, or seconds since ``start``) as naive UTC datetimes."""
    if x_mode == "wall" or start is None:
        low, high = (pd.Timestamp(value).to_pydatetime() for value in zoom)
    else:
        low, high = (start + dt.timedelta(seconds=float(value)) for value in zoom)
    return min(low, high), max(low, high)


def metric_panel(board: Board, run: Mapping[str, Any], name: str, x_mode: str = "step", smoothing: float = 0.0,
                 log_y: bool = False, zoom: tuple[Any, Any] | str | None = None) -> go.Figure:
    """The figure of metric ``name``: its overview (:meth:`RunStore.metric_overview`) or, zoomed to ``zoom`` (in
    x-mode units), every point of the range (:meth:`RunStore.metric_range`) unless the range likely holds more
    than :data:`RANGE_READ_LIMIT` points, where the overview's points in the range are drawn."""
    start = context_time(run.get("start"))
    x_range, bounds = None, (None, None)
    if isinstance(zoom, tuple):
        x_range = zoom
        bounds = tuple(sorted(float(v) for v in zoom)) if x_mode == "step" else _time_bounds(zoom, x_mode, start)
    points = board.store.metric_points(run, name, x_mode == "step", *bounds)
    frame, every, total = points.frame, points.every, points.total
    figure = figures.metric_figure([figures.Line(name, frame, start)], x_mode=x_mode, smoothing=smoothing,
                                   log_y=log_y, x_range=x_range)
    shown = len(figure.data[0].x) if figure.data else 0
    if x_range is None:
        note = f"{len(frame):,} points, {shown:,} drawn" if every else \
            f"overview of {total:,} points: {len(frame):,} read, {shown:,} drawn; zoom in for every point"
    else:
        note = f"every point in range: {len(frame):,}, {shown:,} drawn" if every else \
            f"overview in range: {len(frame):,} points, {shown:,} drawn; zoom in further for every point"
    figures.add_note(figure, note)
    return figure


def system_figures(board: Board, run: Mapping[str, Any], keys: Sequence[str], x_mode: str = "wall",
                   zoom: tuple[Any, Any] | str | None = None) -> list[go.Figure]:
    """The figures of the system panels ``keys``, all over the ``zoom`` range (x-mode units) or the whole run."""
    start = context_time(run.get("start"))
    zoomed = isinstance(zoom, tuple)
    bounds = _time_bounds(zoom, x_mode, start) if zoomed else None
    samples, note = board.store.system_points(run, bounds, figures.MAX_POINTS)
    panels = {panel.key: panel for panel in system_panels(run.get("system_names") or [])}
    revision = f"{x_mode}:{zoom if zoomed else ''}"  # a new range for every panel, whichever was zoomed
    out = []
    for key in keys:
        panel = panels.get(key) or Panel(key, key, "", {})
        out.append(figures.system_figure(panel, samples, x_mode=x_mode, start=start, note=note, revision=revision,
                                         x_range=zoom if zoomed else None))
    return out


def register(app: Any, board: Board) -> None:
    """Register the plots' callbacks on ``app``."""

    @app.callback(Output({"type": METRIC, "name": MATCH}, "figure"),
                  Output({"type": METRIC, "name": MATCH}, "relayoutData"),
                  Output({"type": METRIC_ZOOM, "name": MATCH}, "data"),
                  Input(X_MODE, "value"), Input(SMOOTHING, "value"), Input(LOG_Y, "value"),
                  Input({"type": METRIC, "name": MATCH}, "relayoutData"), Input(RUN, "data"),
                  State({"type": METRIC, "name": MATCH}, "id"), State({"type": METRIC_ZOOM, "name": MATCH}, "data"))
    def _metric(x_mode: str, smoothing: float | None, log_y: list | None, relayout: dict | None, run: dict,
                graph: dict, shown: list | None) -> tuple[Any, Any, Any]:
        zoom = zoom_to_draw(ctx.triggered_prop_ids, [(graph, relayout)], shown)
        try:
            figure = metric_panel(board, run, graph["name"], x_mode or "step", float(smoothing or 0),
                                  "log" in (log_y or []), zoom)
        except ReadError as error:
            logger.warning("metric %r of run %r: %s", graph["name"], run["run_id"], error)
            return _message(str(error)), no_update, no_update
        kept = list(zoom) if isinstance(zoom, tuple) else None
        return figure, None if f"{X_MODE}.value" in ctx.triggered_prop_ids else no_update, kept

    @app.callback(Output({"type": SYSTEM, "panel": ALL}, "figure"),
                  Output({"type": SYSTEM, "panel": ALL}, "relayoutData"), Output(SYSTEM_ZOOM, "data"),
                  Input(X_MODE, "value"), Input({"type": SYSTEM, "panel": ALL}, "relayoutData"), Input(RUN, "data"),
                  State({"type": SYSTEM, "panel": ALL}, "id"), State(SYSTEM_ZOOM, "data"))
    def _system(x_mode: str, relayouts: list, run: dict, ids: list, shown: list | None) -> tuple[list, list, Any]:
        if not ids:
            raise PreventUpdate
        zoom = zoom_to_draw(ctx.triggered_prop_ids, list(zip(ids, relayouts)), shown)
        try:
            out = system_figures(board, run, [item["panel"] for item in ids], x_mode or "wall", zoom)
        except ReadError as error:
            logger.warning("system samples of run %r: %s", run["run_id"], error)
            out = [_message(str(error))] * len(ids)
        kept = list(zoom) if isinstance(zoom, tuple) else None
        reset = f"{X_MODE}.value" in ctx.triggered_prop_ids
        return out, [None if reset else no_update] * len(ids), kept

    @app.callback(Output(METRICS, "children"), Output(SHOWN, "data"), Input(RUN, "data"), State(SHOWN, "data"),
                  State(X_MODE, "value"), State(SMOOTHING, "value"), State(LOG_Y, "value"),
                  State({"type": METRIC_ZOOM, "name": ALL}, "data"), State({"type": METRIC_ZOOM, "name": ALL}, "id"),
                  prevent_initial_call=True)
    def _new_metrics(run: dict, shown: list | None, x_mode: str, smoothing: float | None, log_y: list | None,
                     ranges: list, ids: list) -> tuple[list, list]:
        """A metric logged for the first time: the panels again, drawn here (a new graph's first draw can lose to
        the relayout Plotly sends as it sizes the empty graph), each panel keeping the range it shows."""
        if run["metric_names"] == shown:
            raise PreventUpdate
        zooms = {store["name"]: shown_range for store, shown_range in zip(ids, ranges) if shown_range}
        drawn = {}
        for name in run["metric_names"]:
            zoom = tuple(zooms[name]) if name in zooms else None
            try:
                drawn[name] = metric_panel(board, run, name, x_mode or "step", float(smoothing or 0),
                                           "log" in (log_y or []), zoom)
            except ReadError as error:
                drawn[name] = _message(str(error))
        return metric_panels(run["metric_names"], drawn, zooms), run["metric_names"]

    @app.callback(Output(RUN, "data"), Output(TICK, "disabled"), Input(TICK, "n_intervals"), State(RUN, "data"),
                  prevent_initial_call=True)
    def _tick(_: int, run: dict) -> tuple[Any, bool]:
        try:
            fresh = refreshed_context(board, run)
        except NotFound:  # deleted meanwhile: the plots stay as they were
            return no_update, True
        except ReadError as error:
            logger.warning("run %r: %s", run["run_id"], error)
            return no_update, False
        return (no_update, False) if fresh is None else (fresh, not fresh["running"])


def _message(text: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False)
    return figure
