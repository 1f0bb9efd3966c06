"""The one place that knows the shape of what sacred-gpu stores.

Everything here follows Sacred 0.8.7's ``MongoObserver`` format (``runs``, ``metrics``, GridFS ``fs``) so that
Omniboard and Incense read our runs unchanged; what we add lives in extra fields and collections, never in a
reshaped Sacred field.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from bson import ObjectId

# Making arbitrary Python values storable lives in sacred_gpu.codec (no pandas); importable from here as before.
from sacred_gpu.codec import bson_key, bson_safe, flatten, metric_value, rollup_key  # noqa: F401

# Name prefix of the observer's own series (``sys/gpu0/util_pct``): the catalog's; a name never says whose it is.
from sacred_gpu.sampling.catalog import PREFIX as SYSTEM_PREFIX

#: The ``format`` field of every run document we write (Sacred writes ``MongoObserver-0.7.0``). Version 2 marks the
#: observer's own series (``origin``); version 1 told them apart by their ``sys/`` name alone.
FORMAT = "GpuMongoObserver-2"
#: Every ``format`` we have written, oldest first.
FORMATS = ("GpuMongoObserver-1", FORMAT)

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
    return (_naive_utc(now) - _naive_utc(seen)).total_seconds() > dead_after


def _naive_utc(moment: _dt.datetime) -> _dt.datetime:
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


#: Points a Sacred-format metric document holds at full resolution. Past them, the document keeps a decimated
#: view of the series (every 2nd, then 4th, ... point; at most twice this many points, well under 16 MB) and
#: ``full_points`` says how many of its leading points are complete; every later point is kept in
#: ``metric_chunks`` documents ({metric_id, run_id, name, seq, steps, values, timestamps}, columns packed by
#: :func:`pack_column`, and the fields of :func:`chunk_summary`), one or more per batch of points the observer hands
#: over. Kept small: MongoDB rewrites the whole document on every heartbeat's ``$push`` and Omniboard draws every
#: point of it.
METRIC_CAP = 20_000
#: Points per chunk document (and per journal record): 1.2 MB of BSON with packed columns.
CHUNK_POINTS = 50_000
#: Points per bucket of a chunk's ``preview``, which keeps each bucket's lowest and highest point (about 1,000 points
#: of a full chunk): an overview of a long series reads the previews, not every point, and shows every peak.
CHUNK_PREVIEW_BUCKET = 100


#: Numpy dtypes a chunk column is packed as: integers, floats, and datetimes as milliseconds since 1970 (UTC, the
#: precision of a BSON date).
PACKED_DTYPES = {int: "<i8", float: "<f8", _dt.datetime: "<M8[ms]"}


def pack_column(items: Sequence) -> dict[str, Any] | list:
    """A column of a chunk (its ``steps``, ``values`` or ``timestamps``) as stored: ``{"dtype": "<f8", "data":
    bytes}``, 8 bytes a point in one BSON value, when every item is an ``int`` (within int64), every item a
    ``float`` or every item a ``datetime`` (naive UTC, as Sacred logs them, or aware); else the list itself.

    A packed column costs the writer, the journal and MongoDB one value instead of one per point (a 50,000-point
    chunk: 1.2 MB instead of 2.2 MB of BSON), and readers get numpy arrays. Never raises.
    """
    try:
        kinds = set(map(type, items))
        dtype = PACKED_DTYPES.get(kinds.pop()) if len(kinds) == 1 else None
        if dtype is None:
            return list(items)
        if dtype == PACKED_DTYPES[_dt.datetime]:
            index = pd.DatetimeIndex(items)  # C-level conversion (numpy's own is ~20 times slower)
            if index.tz is not None:
                index = index.tz_convert("UTC").tz_localize(None)
            array = index.to_numpy().astype(dtype)
        else:
            array = np.array(items, dtype=dtype)  # OverflowError past int64: stored as a list
        return {"dtype": dtype, "data": array.tobytes()}
    except Exception:  # noqa: BLE001 - anything odd is stored as it came
        return list(items)


def unpack_column(stored: Any) -> np.ndarray | list:
    """A chunk column as :func:`pack_column` stored it: a numpy array (datetimes as ``datetime64[ms]``), or the list
    (columns of odd items, and chunks written before columns were packed). Raises ``ValueError`` for anything else."""
    if isinstance(stored, list):
        return stored
    if isinstance(stored, dict) and stored.get("dtype") in PACKED_DTYPES.values() and isinstance(
            stored.get("data"), bytes) and len(stored["data"]) % 8 == 0:
        return np.frombuffer(stored["data"], dtype=stored["dtype"])
    raise ValueError(f"not a chunk column: {type(stored).__name__}")


def _picked(column: np.ndarray | list, picks: np.ndarray) -> list:
    """The items of ``column`` at ``picks`` as plain Python values (datetimes as ``datetime``)."""
    if isinstance(column, np.ndarray):
        taken = column[picks]
        return taken.astype("datetime64[ms]").astype(object).tolist() if taken.dtype.kind == "M" else taken.tolist()
    return [column[i] for i in picks.tolist()]


def chunk_summary(steps: np.ndarray | list, values: np.ndarray | list,
                  timestamps: np.ndarray | list) -> dict[str, Any]:
    """Fields a ``metric_chunks`` document carries beside its points, for range reads and overviews.

    Takes the chunk's columns unpacked (:func:`unpack_column`). ``first_step``/``last_step``: the lowest and highest
    step of the chunk; ``first_time``/``last_time``: the earliest and latest timestamp (left out unless every
    timestamp is a datetime); ``preview``: ``{steps, values, timestamps}`` lists, the chunk's first and last point
    and the lowest and highest of every :data:`CHUNK_PREVIEW_BUCKET` points, in order (NaN skipped).
    Chunks written before these fields existed have none of them: readers then read the whole chunk. Never raises.
    """
    summary: dict[str, Any] = {}
    try:
        count = len(values)
        if not count or len(steps) != count or len(timestamps) != count:
            return {}
        step_array = np.asarray(steps)
        if step_array.dtype.kind in "iu" or (step_array.dtype.kind == "f" and not np.isnan(step_array).any()):
            summary.update(first_step=step_array.min().item(), last_step=step_array.max().item())
        if isinstance(timestamps, np.ndarray) and timestamps.dtype.kind == "M":
            summary.update(first_time=timestamps.min().astype("datetime64[ms]").item(),
                           last_time=timestamps.max().astype("datetime64[ms]").item())
        elif all(isinstance(t, _dt.datetime) for t in timestamps):
            summary.update(first_time=min(timestamps), last_time=max(timestamps))
        # the lowest and highest point of each bucket, vectorised: NaN padding, a bucket per row
        bucket = CHUNK_PREVIEW_BUCKET
        rows = -(-count // bucket)
        grid = np.full(rows * bucket, np.nan)
        grid[:count] = np.asarray(values, dtype=np.float64)
        grid = grid.reshape(rows, bucket)
        valid = ~np.isnan(grid)
        filled = valid.any(axis=1)
        base = np.arange(rows) * bucket
        lows = np.where(valid, grid, np.inf).argmin(axis=1) + base
        highs = np.where(valid, grid, -np.inf).argmax(axis=1) + base
        picks = np.unique(np.concatenate(([0, count - 1], lows[filled], highs[filled])))
        summary["preview"] = {"steps": _picked(steps, picks), "values": _picked(values, picks),
                              "timestamps": _picked(timestamps, picks)}
    except Exception:  # noqa: BLE001 - odd points: the chunk is stored without a summary and read whole
        return {}
    return summary


#: Field of the run document holding each user metric's roll-ups (the observer's own series are summed up in
#: :data:`SYSTEM_FIELD` instead), kept current at every heartbeat so a runs table reads
#: no series: ``{<codec.rollup_key(metric name)>: {count, sum, mean, first, first_step, last, last_step, min,
#: min_step, max, max_step}}``.
METRIC_ROLLUPS_FIELD = "metric_rollups"

#: Field of the run document holding the system roll-ups (tier 3), e.g. ``system.gpu_util_mean_pct``.
SYSTEM_FIELD = "system"

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
    """The ``metrics`` (and chunk) documents of ``run_id``'s system series, or of its user series."""
    return {"run_id": run_id, ORIGIN: SYSTEM_ORIGIN if system else {"$ne": SYSTEM_ORIGIN}}

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
    ("runs", [("start_time", -1), ("_id", -1)]),  # the runs table's default order, ties broken by id
    ("runs", [("status", 1)]),
    ("runs", [("experiment.name", 1)]),
    ("runs", [("heartbeat", -1)]),
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
