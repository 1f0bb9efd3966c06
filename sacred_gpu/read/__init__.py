"""The read side: everything notebooks and sacred-board learn of the database goes through :class:`RunStore`.

- :mod:`.store`: ``connect()`` and :class:`RunStore` (one run, its files, the edits readers make).
- :mod:`.runs_table`, :mod:`.series`, :mod:`.settings`: the runs table (with :mod:`.table_extras`: groups and
  sparklines), metric series and system samples, and the table's settings, as mixins of :class:`RunStore`;
  :mod:`.read_bounds`: every read bounded on the server.
- :mod:`.query` (with :mod:`.query_parser` and :mod:`.regex_check`): the query language and the whitelist of dict
  filters.
- :mod:`.views`: what a page shows of a run, as plain data (``RunPage``, ``RunPlots``, ``SystemSummary``);
  :mod:`.plot_reads`: how much of a long series or of a run's samples a plot reads.
- :mod:`.live`: what the running runs are doing now (``LiveRun``), as Prometheus gauges (``gauges``).
- :mod:`.errors`: what a failed read raises (``Unavailable``, ``Refused``, ``NotFound``, ``BadQuery``).

Readers (the dashboard) import from here: the names below, and the schema's facts a reader needs (statuses, the
roll-ups, the dead rule's threshold).
"""

from __future__ import annotations

from sacred_gpu.read.errors import BadQuery, NotFound, ReadError, Refused, Unavailable
from sacred_gpu.read.live import Gauge, LiveRun, gauges
from sacred_gpu.read.plot_reads import MetricPoints, context_time
from sacred_gpu.read.query import QueryError, compile_filter
from sacred_gpu.read.settings import BoardSettings, CustomColumn, MetricColumn
from sacred_gpu.read.store import RunStore, connect
from sacred_gpu.read.views import OUTPUT_CUT, Panel, RunPage, RunPlots, SystemSummary, system_panels, system_summary
from sacred_gpu.schema import DEAD_AFTER, PROBABLY_DEAD, ROLLUPS, STATUSES

__all__ = [
    "DEAD_AFTER", "OUTPUT_CUT", "PROBABLY_DEAD", "ROLLUPS", "STATUSES", "BadQuery", "BoardSettings", "CustomColumn",
    "Gauge", "LiveRun", "MetricColumn", "MetricPoints", "NotFound", "Panel", "QueryError", "ReadError", "Refused",
    "RunPage", "RunPlots", "RunStore", "SystemSummary", "Unavailable", "compile_filter", "connect", "context_time",
    "gauges", "system_panels", "system_summary",
]
