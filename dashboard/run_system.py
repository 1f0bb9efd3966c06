"""The System tab of a run's page: everything the observer sampled, grouped (GPU, the run's processes, host) in the
catalog's panels, one line per GPU on each, with limits and sizes dashed beside their GPU and throttle reasons as
a timeline; each panel's samples downloadable as CSV. All panels zoom together. The run's system summary
(:func:`summary`) heads the tab and the Overview; each of its numbers says what aggregate it is.

Samples are read whole where the run has few enough, else as the heartbeat windows (peaks kept), with every sample
of a zoomed range. While the run is RUNNING its context is re-read every ``board.refresh`` seconds and the panels
redrawn. Callbacks are the named functions below, registered by :func:`register`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from itertools import groupby
from typing import Any

import plotly.graph_objects as go
from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dashboard import figures, series_csv
from dashboard.board import Board, current_board
from dashboard.run_plots import GRID, graph, message, refreshed_context, time_bounds, zoom_to_draw
from sacred_gpu.read import NotFound, Panel, ReadError, RunPlots, context_time, system_panels, system_summary

logger = logging.getLogger(__name__)

X_MODE = "run-system-x"
RUN = "run-system-run"  # dcc.Store: the run's plot context
TICK = "run-system-tick"
ZOOM = "run-plots-system-zoom"  # dcc.Store: the x mode and range the system panels show (range None: the whole run)
SYSTEM = "run-plots-system"  # pattern id type: {"type": SYSTEM, "panel": <panel key>}
PANELS = "run-system-panels"  # the panels, by group; rebuilt when a running run records a new series


def notes(context: Mapping[str, Any], system: Mapping[str, Any], panels: Sequence[Panel]) -> list[html.P]:
    """Why a run has no system data, or no GPU data, as far as its document tells (nothing when it has both)."""
    why = None
    sampling = context.get("sampling")
    if not panels and not system:
        if context.get("status") == "QUEUED":
            why = "This run is queued: it has not started, so nothing has been sampled yet."
        elif sampling == "stock":
            why = "This run was recorded by Sacred's own MongoObserver, which samples no GPU or system metrics."
        elif sampling is None:
            why = "Sampling was turned off for this run (GpuMongoObserver(sampling=False))."
        elif isinstance(sampling, Mapping):
            ran = _seconds(context)
            lasted = f"it ran {ran:.1f} s; " if ran is not None else ""
            why = (f"No system sample was stored for this run ({lasted}the observer samples every "
                   f"{sampling.get('interval_s'):g} s and stores them at each heartbeat).")
        else:
            why = "No system metrics were recorded for this run."
    elif not system.get("gpu_count") and not any(panel.key.startswith("gpu") for panel in panels):
        why = ("No GPU data: this run saw no NVIDIA GPU (no driver, none visible through CUDA_VISIBLE_DEVICES, or "
               "GPU sampling failed). Host metrics are shown.")
    return [html.P(why, className="note run-plots-no-gpu")] if why else []


def _seconds(context: Mapping[str, Any]) -> float | None:
    start, stop = context_time(context.get("start")), context_time(context.get("stop"))
    return (stop - start).total_seconds() if start and stop else None


def summary(view: RunPlots) -> list[Any]:
    """The run's system summary: notes where data is missing, totals (each labelled with its aggregate), one row
    per GPU."""
    found = system_summary(view.system)
    out: list[Any] = notes(view.context, view.system, system_panels(view.context["system_names"]))
    if found.totals:
        out.append(html.Table(html.Tbody([html.Tr([html.Th(label), html.Td(_number(value) + (f" {unit}" if unit
                                                                                           else ""))])
                                          for label, value, unit in found.totals]), className="run-plots-rollups"))
    if found.rows:
        out.append(html.Table([html.Thead(html.Tr([html.Th(label) for label in found.columns])),
                               html.Tbody([html.Tr([html.Td(_number(cell)) for cell in row]) for row in found.rows])],
                              className="run-plots-gpus"))
    return out


def _number(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


def layout(board: Board, view: RunPlots) -> html.Div:
    """The System tab of a run whose plots' view is ``view``."""
    run = view.context
    return html.Div(className="run-plots run-system", children=[
        dcc.Store(id=RUN, data=run),
        dcc.Interval(id=TICK, interval=int(board.refresh * 1000), disabled=not run["running"]),
        dcc.Store(id=ZOOM),
        *summary(view),
        html.Div(className="toolbar", children=[
            html.Label("x axis"),
            dcc.RadioItems(id=X_MODE, value="elapsed", inline=True,
                           options=[{"label": "time since start", "value": "elapsed"},
                                    {"label": "wall time", "value": "wall"}]),
        ]),
        html.Div(panel_groups(run), id=PANELS),
    ])


def panel_groups(run: Mapping[str, Any]) -> list[Any]:
    """The panels of a run's system series, under their group's heading."""
    groups: list[Any] = []
    for group, members in groupby(system_panels(run["system_names"]), key=lambda panel: panel.group):
        groups += [html.H4(group), html.Div([graph(panel.title, {"type": SYSTEM, "panel": panel.key}, panel.unit,
                                                   csv=series_csv.system_url(run["run_id"], panel.key))
                                             for panel in members], style=GRID)]
    return groups


def system_figures(board: Board, run: Mapping[str, Any], keys: Sequence[str], x_mode: str = "wall",
                   zoom: tuple[Any, Any] | str | None = None) -> list[go.Figure]:
    """The figures of the system panels ``keys``, all over the ``zoom`` range (x-mode units) or the whole run."""
    start = context_time(run.get("start"))
    zoomed = isinstance(zoom, tuple)
    bounds = time_bounds(zoom, x_mode, start) if zoomed else None
    samples, note = board.store.system_points(run, bounds, figures.MAX_POINTS)
    panels = {panel.key: panel for panel in system_panels(run.get("system_names") or [])}
    revision = f"{x_mode}:{zoom if zoomed else ''}"  # a new range for every panel, whichever was zoomed
    return [figures.system_figure(panels.get(key) or Panel(key, key, "", {}), samples, x_mode=x_mode, start=start,
                                  note=note, revision=revision, x_range=zoom if zoomed else None) for key in keys]


# -- callbacks: named functions, registered by register() ------------------------------------------------------------
def draw(x_mode: str, relayouts: list, run: dict, ids: list, shown: dict | None) -> tuple[list, list, Any]:
    """Every system panel drawn again, over one range: the x axis changed, one was zoomed, or the run re-read."""
    if not ids:
        raise PreventUpdate
    x_mode = x_mode or "elapsed"
    shown = shown if isinstance(shown, dict) else {}
    try:
        zoom = zoom_to_draw(ctx.triggered_prop_ids, list(zip(ids, relayouts)), shown.get("range"), X_MODE)
    except PreventUpdate:  # a relayout that leaves x alone: redraw only where the panels show another x mode
        if shown.get("x") == x_mode:  # (an x-axis click overtaken by Plotly's autosize relayout)
            raise
        zoom = None
    try:
        out = system_figures(current_board(), run, [item["panel"] for item in ids], x_mode, zoom)
    except ReadError as error:
        logger.warning("system samples of run %r: %s", run["run_id"], error)
        out = [message(str(error))] * len(ids)
    reset = f"{X_MODE}.value" in ctx.triggered_prop_ids or shown.get("x", x_mode) != x_mode
    kept = {"x": x_mode, "range": list(zoom) if isinstance(zoom, tuple) else None}
    return out, [None if reset else no_update] * len(ids), kept


def tick(_: int, run: dict) -> tuple[Any, bool, Any]:
    """A running run re-read (its panels rebuilt where it recorded a new series); polling stops when it ended."""
    try:
        fresh = refreshed_context(current_board(), run)
    except NotFound:
        return no_update, True, no_update
    except ReadError as error:
        logger.warning("run %r: %s", run["run_id"], error)
        return no_update, False, no_update
    if fresh is None:
        return no_update, False, no_update
    rebuilt = panel_groups(fresh) if fresh["system_names"] != run["system_names"] else no_update
    return fresh, not fresh["running"], rebuilt


def register(app: Any) -> None:
    """Register the tab's callbacks on ``app``."""
    app.callback(Output({"type": SYSTEM, "panel": ALL}, "figure"),
                 Output({"type": SYSTEM, "panel": ALL}, "relayoutData"), Output(ZOOM, "data"),
                 Input(X_MODE, "value"), Input({"type": SYSTEM, "panel": ALL}, "relayoutData"), Input(RUN, "data"),
                 State({"type": SYSTEM, "panel": ALL}, "id"), State(ZOOM, "data"))(draw)
    app.callback(Output(RUN, "data"), Output(TICK, "disabled"), Output(PANELS, "children"),
                 Input(TICK, "n_intervals"), State(RUN, "data"), prevent_initial_call=True)(tick)
