"""The run document and its collections, in Sacred 0.8.7's ``MongoObserver`` format (``runs``, ``metrics``, GridFS
``fs``) so that Omniboard and Incense read our runs unchanged; what we add lives in fields and collections of its own.
Statuses, the dead rule (its Python predicate and its MongoDB filter, side by side), formats, field names, indexes.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from sacred_gpu.schema.catalog import PREFIX as SYSTEM_PREFIX

#: The ``format`` field of every run document we write (Sacred writes ``MongoObserver-0.7.0``). Version 2 marks the
#: observer's own series (``origin``); version 1 told them apart by their ``sys/`` name alone.
FORMAT = "GpuMongoObserver-2"
#: Every ``format`` we have written, oldest first.
FORMATS = ("GpuMongoObserver-1", FORMAT)
#: The ``format`` of runs written by Sacred's own observers (``MongoObserver.VERSION`` since Sacred 0.7, the queued
#: one's too), or none (older Sacred).
STOCK_FORMATS = (None, "MongoObserver-0.7.0")

#: Run statuses, as Sacred spells them.
QUEUED = "QUEUED"
RUNNING = "RUNNING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
INTERRUPTED = "INTERRUPTED"
TIMEOUT = "TIMEOUT"
STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED, INTERRUPTED, TIMEOUT)

#: What readers call a RUNNING run that has given no sign of life for :data:`DEAD_AFTER` seconds (Omniboard's rule).
PROBABLY_DEAD = "PROBABLY_DEAD"
#: Seconds since the last heartbeat (or, before the first, since the start) after which a RUNNING run is
#: PROBABLY_DEAD: Omniboard's threshold.
DEAD_AFTER = 120.0


def is_probably_dead(doc: dict[str, Any], now: _dt.datetime, dead_after: float = DEAD_AFTER) -> bool:
    """The dead rule on one run document (``now``: naive UTC, as stored): RUNNING, and its heartbeat, or its start
    time where it has had no heartbeat, older than ``dead_after`` seconds. :func:`probably_dead_filter` is the same
    rule as a MongoDB filter."""
    seen = doc.get("heartbeat") or doc.get("start_time")
    if doc.get("status") != RUNNING or not isinstance(seen, _dt.datetime):
        return False
    return (naive_utc(now) - naive_utc(seen)).total_seconds() > dead_after


def naive_utc(moment: _dt.datetime) -> _dt.datetime:
    """``moment`` as stored (naive UTC), from an aware datetime too (a ``tz_aware=True`` client reads those)."""
    return moment.astimezone(_dt.timezone.utc).replace(tzinfo=None) if moment.tzinfo is not None else moment


def probably_dead_filter(now: _dt.datetime, dead_after: float = DEAD_AFTER) -> dict[str, Any]:
    """:func:`is_probably_dead` as a MongoDB filter (a test checks that both agree on every case)."""
    cutoff = now - _dt.timedelta(seconds=dead_after)
    return {"status": RUNNING, "$or": [{"heartbeat": {"$lt": cutoff}},
                                       {"heartbeat": None, "start_time": {"$lt": cutoff}}]}


#: Fields of a run document that other tools own: we never write them.
FOREIGN_FIELDS = ("omniboard",)

#: Name of the collection holding our atomic run-id counters, one document per runs collection.
COUNTERS = "sacred_gpu.counters"

#: Omniboard's per-database column settings, shared with sacred-board: metric columns {name, metric_name, extrema}
#: and custom columns {name, config_path}. Omniboard does not prefix them, so neither do we.
OMNIBOARD_METRIC_COLUMNS = "omniboard.metric.columns"
OMNIBOARD_CUSTOM_COLUMNS = "omniboard.custom.columns"
#: Omniboard's ``extrema`` for the roll-ups it shares with us; other roll-ups are kept in :data:`BOARD_SETTINGS`.
OMNIBOARD_EXTREMA = {"min": "min", "max": "max", "last": "last", "mean": "average"}
#: sacred-board's own settings, one document ``{_id: key, value}`` per setting (column layout, extra metric columns).
BOARD_SETTINGS = "sacred_gpu.board"

#: The GridFS bucket. Sacred always uses the default bucket, whatever the collection prefix.
GRIDFS_BUCKET = "fs"


@dataclass(frozen=True)
class Collections:
    """Collection names for one collection prefix, named the way Sacred names them."""

    prefix: str = ""

    def __post_init__(self) -> None:
        if "$" in self.prefix or "\0" in self.prefix or self.prefix.startswith("system."):
            raise ValueError(f"invalid collection prefix {self.prefix!r}: MongoDB forbids '$', NUL and 'system.'")

    @property
    def _lead(self) -> str:
        return f"{self.prefix}_" if self.prefix else ""

    @property
    def runs(self) -> str:
        return f"{self._lead}runs"

    @property
    def metrics(self) -> str:
        return f"{self._lead}metrics"

    @property
    def counters(self) -> str:
        return COUNTERS

    @property
    def chunks(self) -> str:
        """Full-resolution points of metric series that passed :data:`METRIC_CAP`."""
        return f"{self._lead}metric_chunks"

    @property
    def samples(self) -> str:
        """Full-resolution system samples (tier 2): one document per sample."""
        return f"{self._lead}system_samples"


#: Characters of captured output kept in the run document (head and tail); MongoDB's document limit is 16 MB.
OUTPUT_CAP = 1_000_000
#: Line put between the head and the tail of captured output that was cut.
OUTPUT_MARKER = "\n[... sacred-gpu: {cut} characters of output cut here (output_cap={cap}) ...]\n"


def cap_output(text: str, cap: int = OUTPUT_CAP) -> str:
    """``text`` if it is at most ``cap`` characters, else its first and last parts with a marker between."""
    if text is None or len(text) <= cap:
        return text
    head = cap // 5
    tail = cap - head
    return text[:head] + OUTPUT_MARKER.format(cut=len(text) - head - tail, cap=cap) + text[-tail:]


#: Field of the run document holding each user metric's roll-ups (the observer's own series are summed up in
#: :data:`SYSTEM_FIELD` instead), kept current at every heartbeat so a runs table reads
#: no series: ``{<rollup_key(metric name)>: {count, sum, mean, first, first_step, last, last_step, min,
#: min_step, max, max_step}}``.
METRIC_ROLLUPS_FIELD = "metric_rollups"
#: The roll-ups of a metric a reader can ask for (columns ``loss.min``, filters ``loss.min < 0.3``, sorts).
ROLLUPS = ("min", "max", "mean", "last", "first", "min_step", "max_step")

#: Field of the run document holding the system roll-ups (tier 3), e.g. ``system.gpu_util_mean_pct``.
SYSTEM_FIELD = "system"
#: Field of the run document holding the system metrics' values over the last heartbeat window, kept current at
#: every heartbeat so a live view (the board's ``/metrics``) reads one document per running run:
#: ``{"t": <the window's last sample time>, "values": {<metric name without "sys/">: value}}``.
LATEST_FIELD = "system_latest"


def latest_document(time: _dt.datetime | None, values: Mapping[str, float]) -> dict[str, Any]:
    """The :data:`LATEST_FIELD` value for one window's ``values`` (keyed by metric name, ``sys/`` or not)."""
    return {"t": time, "values": {name.removeprefix(SYSTEM_PREFIX): value for name, value in values.items()}}


#: Field of the run document saying how the observer sampled the run: ``{"interval_s": 1.0, "slow_interval_s":
#: 10.0}``, or ``None`` where sampling was off (absent in runs recorded before it, and in Sacred's own runs).
SAMPLING_FIELD = "sampling"

#: Field marking the observer's own series: in their ``metrics`` document and their ``info.metrics`` entry its
#: value is :data:`SYSTEM_ORIGIN`; a user's series has no such field, whatever its name (a user may log ``sys/x``).
ORIGIN = "origin"
SYSTEM_ORIGIN = "system"


def series_names(doc: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The names of a run's user series and of its system series, each in logging order without repeats, from its
    ``info.metrics`` (and ``format``: runs of format 1 marked nothing, their ``sys/`` series were the system's)."""
    entries = [entry for entry in ((doc.get("info") or {}).get("metrics") or [])
               if isinstance(entry, Mapping) and isinstance(entry.get("name"), str)]
    legacy = doc.get("format") == FORMATS[0]
    user: dict[str, None] = {}
    system: dict[str, None] = {}
    for entry in entries:
        name = entry["name"]
        own = entry.get(ORIGIN) == SYSTEM_ORIGIN or (legacy and name.startswith(SYSTEM_PREFIX))
        (system if own else user)[name] = None
    return list(user), list(system)


def series_filter(run_id: Any, system: bool) -> dict[str, Any]:
    """The ``metrics`` (and chunk) documents of ``run_id``'s system series, or of its user series (no ``origin``:
    equality on None, which an index bounds, where ``$ne`` would be a range)."""
    return {"run_id": run_id, ORIGIN: SYSTEM_ORIGIN if system else None}


#: Time field and per-run field of a sample document; the other fields are metric names without ``sys/``.
SAMPLE_TIME = "t"
SAMPLE_RUN = "run_id"
#: Options of the time-series collection used for samples where the server has them (MongoDB 5.0+).
SAMPLES_TIMESERIES = {"timeField": SAMPLE_TIME, "metaField": SAMPLE_RUN, "granularity": "seconds"}


def sample_document(run_id: Any, time: _dt.datetime, values: dict[str, float]) -> dict[str, Any]:
    """A system sample as stored: ``{"t": time, "run_id": id, "gpu0/util_pct": 97.0, ...}``."""
    doc: dict[str, Any] = {SAMPLE_TIME: time, SAMPLE_RUN: run_id}
    doc.update((name.removeprefix(SYSTEM_PREFIX), value) for name, value in values.items())
    return doc


#: Indexes we create, as ``(collection attribute, [(field, direction), ...])``. ``create_index`` is idempotent.
INDEXES: tuple[tuple[str, list[tuple[str, int]]], ...] = (
    ("metrics", [("run_id", 1), ("name", 1)]),
    # a run's user or system series, all or by name (series_filter; sparklines): equality on the three fields
    ("metrics", [("run_id", 1), (ORIGIN, 1), ("name", 1)]),
    ("runs", [("start_time", -1), ("_id", -1)]),  # the runs table's default order, ties broken by id
    ("runs", [("status", 1)]),
    ("runs", [("experiment.name", 1)]),
    # the runs table filtered by status or experiment in its default order: equality, then the sort
    ("runs", [("status", 1), ("start_time", -1), ("_id", -1)]),
    ("runs", [("experiment.name", 1), ("start_time", -1), ("_id", -1)]),
    ("runs", [("heartbeat", -1)]),
    # Sacred's own runs (no ``format``), whose roll-ups metric filters and sorts compute from their series
    ("runs", [("format", 1)]),
    ("samples", [(SAMPLE_RUN, 1), (SAMPLE_TIME, 1)]),
    ("chunks", [("metric_id", 1), ("seq", 1)]),
    ("chunks", [("metric_id", 1), ("first_step", 1)]),  # range reads (RunStore.metric_range)
)

#: Index on GridFS files for content-hash deduplication of sources and resources.
GRIDFS_INDEXES: tuple[list[tuple[str, int]], ...] = ([("filename", 1), ("md5", 1)],)


def artifact_filename(runs_collection: str, run_id: Any, name: str) -> str:
    """GridFS filename of an artifact, exactly as Sacred builds it."""
    return f"artifact://{runs_collection}/{run_id}/{name}"


def new_object_id() -> ObjectId:
    """A fresh id generated on the client, so records can reference a document before it is written."""
    return ObjectId()
