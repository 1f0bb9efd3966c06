"""The Metrics tab of a run's page: one panel per user metric, found by name, its data downloadable as CSV.

Each panel is read as an overview (:meth:`RunStore.metric_points`: never every point of a long series) and, when
zoomed, at full resolution over the zoomed range. A run may log thousands of metrics: at most :data:`MAX_PANELS`
panels are drawn, those whose names match the filter. While the run is RUNNING its plot context is re-read every
``board.refresh`` seconds and every panel redrawn from it, keeping its x axis, zoom and smoothing; a metric logged
for the first time gets its panel. Callbacks are the named functions below, registered by :func:`register`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from dash import ALL, MATCH, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dashboard import figures, series_csv
from dashboard.board import Board, current_board
from dashboard.run_plots import GRID, graph, message, refreshed_context, time_bounds, zoom_to_draw
from sacred_gpu.read import NotFound, ReadError, RunPlots, context_time

logger = logging.getLogger(__name__)

X_MODE = "run-plots-x"
SMOOTHING = "run-plots-smoothing"
LOG_Y = "run-plots-log"
FILTER = "run-metrics-filter"
COUNT = "run-metrics-count"
RUN = "run-plots-run"  # dcc.Store: the plot context of the metrics shown (trimmed())
TICK = "run-plots-tick"  # dcc.Interval: re-reads a running run, which redraws its plots
METRICS = "run-plots-metrics"  # the metric panels; a running run's new metrics join them
SHOWN = "run-plots-shown"  # dcc.Store: the metric names that have a panel
METRIC = "run-plots-metric"  # pattern id type: {"type": METRIC, "name": <metric>}
METRIC_ZOOM = "run-plots-metric-zoom"  # dcc.Store per metric panel: what it shows (shown_state())
#: Most metric panels a tab draws at once (the filter finds the others).
MAX_PANELS = 48
#: Key of a metric figure's ``layout.meta`` marking a line that grows as points arrive (see :func:`new_points`).
EXTENDABLE = "extendable"
#: The smoothing slider's marks: far enough apart to read at the slider's width.
SMOOTHING_MARKS = {0: "0", 0.25: "0.25", 0.5: "0.5", 0.75: "0.75", 0.99: "0.99"}


def select(names: Sequence[str], query: str | None) -> list[str]:
    """The names that hold every word of ``query`` (any case), in their order."""
    words = (query or "").lower().split()
    return [name for name in names if all(word in name.lower() for word in words)]


def trimmed(context: Mapping[str, Any], query: str | None = "") -> dict[str, Any]:
    """A plot context cut to the metrics the tab draws (the first :data:`MAX_PANELS` matching ``query``), with
    ``metric_total`` and ``metric_matching`` counts: what the page holds of a run with thousands of metrics."""
    matching = select(context["metric_names"], query)
    shown = matching[:MAX_PANELS]
    rollups = context.get("rollups") or {}
    return {**context, "metric_names": shown, "rollups": {name: rollups.get(name, {}) for name in shown},
            "metric_total": len(context["metric_names"]), "metric_matching": len(matching)}


def count_text(run: Mapping[str, Any]) -> str:
    """How many metrics the tab shows of how many."""
    total, matching, shown = run["metric_total"], run["metric_matching"], len(run["metric_names"])
    if shown == total:
        return f"{total:,} metric{'s' if total != 1 else ''}"
    more = "; refine the filter to see the others" if matching > shown else ""
    return f"{shown:,} of {matching:,} matching metrics shown ({total:,} in all){more}"


def layout(board: Board, view: RunPlots) -> html.Div:
    """The Metrics tab of a run whose plots' view is ``view``."""
    run = trimmed(view.context)
    controls = html.Div(className="toolbar run-plots-controls", children=[
        dcc.Input(id=FILTER, type="search", debounce=0.3, placeholder="find metrics by name",
                  className="metric-filter"),
        html.Span(count_text(run), id=COUNT, className="count"),
        html.Label("x axis"),
        dcc.RadioItems(id=X_MODE, value="step", inline=True,
                       options=[{"label": "step", "value": "step"}, {"label": "wall time", "value": "wall"},
                                {"label": "time since start", "value": "elapsed"}]),
        html.Label("smoothing (EMA)"),
        html.Div(dcc.Slider(id=SMOOTHING, min=0, max=0.99, step=0.01, value=0, updatemode="mouseup",
                            marks=SMOOTHING_MARKS, tooltip={"placement": "bottom"}), style={"width": "300px"}),
        dcc.Checklist(id=LOG_Y, options=[{"label": "log y", "value": "log"}], value=[], inline=True),
    ])
    return html.Div(className="run-plots", children=[
        dcc.Store(id=RUN, data=run),
        dcc.Interval(id=TICK, interval=int(board.refresh * 1000), disabled=not run["running"]),
        controls,
        dcc.Store(id=SHOWN, data=run["metric_names"]),
        html.Div(metric_panels(run), id=METRICS, style=GRID),
    ])


def metric_panels(run: Mapping[str, Any], drawn: Mapping[str, go.Figure] | None = None,
                  states: Mapping[str, dict] | None = None) -> list[Any]:
    """One panel per metric of ``run`` (a trimmed context), its figure from ``drawn`` or else from the metric
    callback, what it shows (:func:`shown_state`) from ``states``; or a note that there are none."""
    names = run["metric_names"]
    if not names:
        return [html.P("This run logged no metrics." if not run["metric_total"] else "No metric matches the filter.",
                       className="note")]
    panels = []
    for name in names:
        figure = (drawn or {}).get(name)
        panel = graph(name, {"type": METRIC, "name": name}, figure=sent(figure) if figure is not None else None,
                      csv=series_csv.metric_url(run["run_id"], name))
        panel.children.append(dcc.Store(id={"type": METRIC_ZOOM, "name": name}, data=(states or {}).get(name)))
        panels.append(panel)
    return panels


def shown_state(x_mode: str | None, smoothing: float | None, log_y: list | None, zoom: Any = None,
                seen: list | None = None) -> dict:
    """What a metric panel shows, kept beside it: x mode, smoothing, log y, the x range (None: the whole series)
    and ``seen``, the series' point count and last step when it was drawn. A redraw is skipped only where it shows
    what the controls ask for."""
    return {"x": x_mode or "step", "smoothing": float(smoothing or 0), "log": "log" in (log_y or []),
            "range": list(zoom) if isinstance(zoom, tuple) else None, "seen": seen}


def _seen(run: Mapping[str, Any], name: str) -> list | None:
    """The point count and last step of metric ``name`` in a plot context (None where unknown: runs of Sacred's
    own observer store no roll-ups, and their panels are redrawn at every re-read)."""
    rollup = (run.get("rollups") or {}).get(name) or {}
    return [rollup["count"], rollup.get("last_step")] if rollup.get("count") is not None else None


def _wanted_zoom(triggered: Mapping[str, Any], graph_id: dict, relayout: dict | None, shown: dict,
                 wanted: dict) -> tuple[Any, Any] | str | None:
    """The range to draw: :func:`zoom_to_draw`'s, except that a relayout that leaves x alone still redraws a
    panel that does not show what the controls ask for (an x-axis click whose request was overtaken by Plotly's
    autosize relayout, which Dash sends as a new request and whose answer replaces the click's)."""
    try:
        return zoom_to_draw(triggered, [(graph_id, relayout)], shown.get("range"), X_MODE)
    except PreventUpdate:
        if all(shown.get(key) == wanted[key] for key in ("x", "smoothing", "log")):
            raise
        return tuple(shown["range"]) if shown.get("range") and shown.get("x") == wanted["x"] else None


def metric_panel(board: Board, run: Mapping[str, Any], name: str, x_mode: str = "step", smoothing: float = 0.0,
                 log_y: bool = False, zoom: tuple[Any, Any] | str | None = None) -> go.Figure:
    """The figure of metric ``name``: its overview or, zoomed to ``zoom`` (in x-mode units), every point of the
    range unless the range likely holds more than the read side reads at once, where the overview's points in the
    range are drawn."""
    start = context_time(run.get("start"))
    x_range, bounds = None, (None, None)
    if isinstance(zoom, tuple):
        x_range = zoom
        bounds = tuple(sorted(float(v) for v in zoom)) if x_mode == "step" else time_bounds(zoom, x_mode, start)
    points = board.store.metric_points(run, name, x_mode == "step", *bounds)
    frame, every, total = points.frame, points.every, points.total
    figure = figures.metric_figure([figures.Line(name, frame, start)], x_mode=x_mode, smoothing=smoothing,
                                   log_y=log_y, x_range=x_range)
    shown = len(figure.data[0].x) if figure.data else 0
    count = f"{len(frame):,} point{'s' if len(frame) != 1 else ''}"
    if x_range is None and every and run.get("running") and not smoothing and len(frame) <= figures.MAX_POINTS:
        note = "every point, new ones added as they arrive"  # no count: the line grows (see new_points)
        figure.update_layout(meta={EXTENDABLE: True})
    elif x_range is None:
        note = f"{count}, {shown:,} drawn" if every else \
            f"overview of {total:,} points: {len(frame):,} read, {shown:,} drawn; zoom in for every point"
    else:
        note = f"every point in range: {len(frame):,}, {shown:,} drawn" if every else \
            f"overview in range: {count}, {shown:,} drawn; zoom in further for every point"
    figures.add_note(figure, note)
    return figure


def new_points(board: Board, run: Mapping[str, Any], name: str, shown: Mapping[str, Any],
               seen: list | None) -> dict[str, Any] | None:
    """The points of metric ``name`` logged since its panel was drawn, as the ``extendData`` that appends them to
    its line; ``None`` where the panel must be drawn again instead: it is zoomed or smoothed, it drew a downsampled
    overview (over :data:`figures.MAX_POINTS` points), or the series did not simply grow at its end."""
    drawn = shown.get("seen")
    if shown.get("range") or shown.get("smoothing") or not drawn or not seen or None in (*drawn, *seen) \
            or seen[0] > figures.MAX_POINTS or seen[0] <= drawn[0] or seen[1] <= drawn[1]:
        return None
    frame = board.store.metric_range(run["run_id"], name, drawn[1])
    frame = frame[frame["step"] > drawn[1]]
    if len(frame) != seen[0] - drawn[0]:
        return None
    x = figures.x_values(frame, shown.get("x") or "step", context_time(run.get("start")))
    return {"x": [figures.plain(x.to_numpy())], "y": [figures.plain(frame["value"].to_numpy(dtype=float))]}


def sent(figure: go.Figure) -> go.Figure | dict[str, Any]:
    """A panel's figure as handed to Dash: one whose line grows as points arrive with its arrays as plain lists
    (:func:`figures.extendable`), others as they are."""
    return figures.extendable(figure) if (figure.layout.meta or {}).get(EXTENDABLE) else figure


# -- callbacks: named functions, registered by register() ------------------------------------------------------------
def draw(x_mode: str, smoothing: float | None, log_y: list | None, relayout: dict | None, run: dict, graph_id: dict,
         shown: dict | None) -> tuple[Any, Any, Any, Any]:
    """One metric panel drawn again: a control changed, it was zoomed, or the run was re-read. A re-read sends
    nothing for a panel whose series has no new point, and only the new points (Plotly's ``extendData``) where
    its line can simply grow (:func:`new_points`)."""
    shown = shown if isinstance(shown, dict) else {}
    wanted = shown_state(x_mode, smoothing, log_y)
    seen = _seen(run, graph_id["name"])
    board = current_board()
    if set(ctx.triggered_prop_ids) == {f"{RUN}.data"} and seen is not None \
            and all(shown.get(key) == wanted[key] for key in ("x", "smoothing", "log")):
        if shown.get("seen") == seen:
            raise PreventUpdate  # the run was re-read, this series has no new point: nothing is sent for its panel
        try:
            extension = new_points(board, run, graph_id["name"], shown, seen)
        except ReadError as error:
            logger.warning("metric %r of run %r: %s", graph_id["name"], run["run_id"], error)
            raise PreventUpdate from error  # the next re-read tries again
        if extension is not None:
            return no_update, no_update, {**shown, "seen": seen}, [extension, [0]]
    zoom = _wanted_zoom(ctx.triggered_prop_ids, graph_id, relayout, shown, wanted)
    try:
        figure = metric_panel(board, run, graph_id["name"], wanted["x"], wanted["smoothing"], wanted["log"], zoom)
    except ReadError as error:
        logger.warning("metric %r of run %r: %s", graph_id["name"], run["run_id"], error)
        return message(str(error)), no_update, no_update, no_update
    reset = f"{X_MODE}.value" in ctx.triggered_prop_ids or shown.get("x", wanted["x"]) != wanted["x"]
    return sent(figure), None if reset else no_update, shown_state(x_mode, smoothing, log_y, zoom, seen), no_update


def panels(run: dict, shown: list | None, x_mode: str, smoothing: float | None, log_y: list | None, states: list,
           ids: list) -> tuple[list, list, str]:
    """The panels again where the metrics shown changed (the filter, or a metric logged for the first time),
    drawn here (a new graph's first draw can lose to the relayout Plotly sends as it sizes the empty graph), each
    panel keeping the range it shows."""
    if run["metric_names"] == shown:
        raise PreventUpdate
    board = current_board()
    x_mode = x_mode or "step"
    zooms = {store["name"]: state["range"] for store, state in zip(ids, states)
             if isinstance(state, dict) and state.get("range") and state.get("x") == x_mode}
    drawn, kept = {}, {}
    for name in run["metric_names"]:
        zoom = tuple(zooms[name]) if name in zooms else None
        try:
            drawn[name] = metric_panel(board, run, name, x_mode, float(smoothing or 0), "log" in (log_y or []), zoom)
            kept[name] = shown_state(x_mode, smoothing, log_y, zoom, _seen(run, name))
        except ReadError as error:
            drawn[name] = message(str(error))
    return metric_panels(run, drawn, kept), run["metric_names"], count_text(run)


def find(query: str | None, run: dict) -> Any:
    """The metrics matching the filter: the run's context re-read and cut to them."""
    try:
        fresh = current_board().store.run_plots(run["run_id"]).context
    except ReadError as error:
        logger.warning("run %r: %s", run["run_id"], error)
        return no_update
    return trimmed(fresh, query)


def tick(_: int, run: dict, query: str | None) -> tuple[Any, bool]:
    """A running run re-read: its plots are redrawn where anything changed; polling stops when it has ended."""
    try:
        fresh = refreshed_context(current_board(), run, lambda context: trimmed(context, query))
    except NotFound:  # deleted meanwhile: the plots stay as they were
        return no_update, True
    except ReadError as error:
        logger.warning("run %r: %s", run["run_id"], error)
        return no_update, False
    return (no_update, False) if fresh is None else (fresh, not fresh["running"])


def register(app: Any) -> None:
    """Register the tab's callbacks on ``app``."""
    app.callback(Output({"type": METRIC, "name": MATCH}, "figure"),
                 Output({"type": METRIC, "name": MATCH}, "relayoutData"),
                 Output({"type": METRIC_ZOOM, "name": MATCH}, "data"),
                 Output({"type": METRIC, "name": MATCH}, "extendData"),
                 Input(X_MODE, "value"), Input(SMOOTHING, "value"), Input(LOG_Y, "value"),
                 Input({"type": METRIC, "name": MATCH}, "relayoutData"), Input(RUN, "data"),
                 State({"type": METRIC, "name": MATCH}, "id"),
                 State({"type": METRIC_ZOOM, "name": MATCH}, "data"))(draw)
    app.callback(Output(METRICS, "children"), Output(SHOWN, "data"), Output(COUNT, "children"), Input(RUN, "data"),
                 State(SHOWN, "data"), State(X_MODE, "value"), State(SMOOTHING, "value"), State(LOG_Y, "value"),
                 State({"type": METRIC_ZOOM, "name": ALL}, "data"), State({"type": METRIC_ZOOM, "name": ALL}, "id"),
                 prevent_initial_call=True)(panels)
    app.callback(Output(RUN, "data", allow_duplicate=True), Input(FILTER, "value"), State(RUN, "data"),
                 prevent_initial_call=True)(find)
    app.callback(Output(RUN, "data", allow_duplicate=True), Output(TICK, "disabled"), Input(TICK, "n_intervals"),
                 State(RUN, "data"), State(FILTER, "value"), prevent_initial_call=True)(tick)
