"""What the Metrics and System tabs of a run's page share: a panel's component (graph, title, CSV link), the x range
a plot callback draws (:func:`zoom_to_draw`), and a running run's plot context re-read (:func:`refreshed_context`).
The tabs themselves are ``run_metrics.py`` and ``run_system.py``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import dcc, html
from dash.exceptions import PreventUpdate

from dashboard import figures
from dashboard.board import Board

GRAPH_CONFIG = {"displaylogo": False, "scrollZoom": False}
GRID = {"display": "grid", "gridTemplateColumns": "repeat(auto-fill, minmax(520px, 1fr))", "gap": "12px"}


def graph(title: str, graph_id: dict, unit: str = "", figure: go.Figure | None = None, csv: str | None = None
          ) -> html.Div:
    """A panel: its title (with ``unit``), a link to its data as CSV (``csv``: the URL), and the graph."""
    extra = {"figure": figure} if figure is not None else {}
    heading = [f"{title} ({unit})" if unit else title]
    if csv:
        heading.append(html.A("CSV", href=csv, download="", className="panel-csv", title="every point, as CSV"))
    return html.Div(className="run-plot", children=[
        html.H5(heading),
        dcc.Loading(dcc.Graph(id=graph_id, config=GRAPH_CONFIG, style={"height": f"{figures.HEIGHT}px"}, **extra),
                    type="dot", delay_show=300, overlay_style={"visibility": "visible", "opacity": 0.6}),
    ])


def message(text: str) -> go.Figure:
    """A figure that only says ``text`` (a read that failed)."""
    figure = go.Figure()
    figure.add_annotation(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False)
    return figure


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
                 shown: Sequence[Any] | None, x_mode_id: str) -> tuple[Any, Any] | str | None:
    """The x range a plot callback draws (x-mode units; "reset" or None: the whole run).

    ``triggered``: ``ctx.triggered_prop_ids``, what set the callback off (several inputs where Dash merged triggers
    that came together, an x-mode click and Plotly's autosize relayout say; none on a first call); ``relayouts``:
    ``(graph id, relayoutData)`` of the panels it draws; ``shown``: the range they show; ``x_mode_id``: the x-mode
    control's id. An x-mode change wins (a range in the old mode's units means nothing now), then a relayout that
    sets x, then the range shown. Raises PreventUpdate where only relayouts that leave x alone (autosize, a y-only
    zoom) set it off.
    """
    if f"{x_mode_id}.value" in triggered:
        return None
    moved = [graph_id for key, graph_id in triggered.items() if key.endswith(".relayoutData")]
    for graph_id, relayout in relayouts:
        if graph_id in moved and (zoom := parse_relayout(relayout)) is not None:
            return zoom
    if moved and len(moved) == len(triggered):
        raise PreventUpdate
    return tuple(shown) if shown else None


def time_bounds(zoom: tuple[Any, Any], x_mode: str, start: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    """A zoomed x range of a time axis (wall-time strings, or seconds since ``start``) as naive UTC datetimes."""
    if x_mode == "wall" or start is None:
        low, high = (pd.Timestamp(value).to_pydatetime() for value in zoom)
    else:
        low, high = (start + dt.timedelta(seconds=float(value)) for value in zoom)
    return min(low, high), max(low, high)


def refreshed_context(board: Board, run: Mapping[str, Any], trim: Any = None) -> dict[str, Any] | None:
    """The plot context of a running run re-read (new points, samples, its end), cut by ``trim`` (a function of
    the context) as the tab keeps it, or None where nothing changed (the plots are then left as they are).
    NotFound where the run is gone."""
    fresh = board.store.run_plots(run["run_id"]).context
    fresh = trim(fresh) if trim else fresh
    return None if fresh == run else fresh
