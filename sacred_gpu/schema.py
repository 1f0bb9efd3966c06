"""The one place that knows the shape of what sacred-gpu stores.

Everything here follows Sacred 0.8.7's ``MongoObserver`` format (``runs``, ``metrics``, GridFS ``fs``) so that
Omniboard and Incense read our runs unchanged; what we add lives in extra fields and collections, never in a
reshaped Sacred field.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from bson.int64 import Int64

#: The ``format`` field of every run document we write (Sacred writes ``MongoObserver-0.7.0``).
FORMAT = "GpuMongoObserver-1"

#: Run statuses, as Sacred spells them.
QUEUED = "QUEUED"
RUNNING = "RUNNING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
INTERRUPTED = "INTERRUPTED"
TIMEOUT = "TIMEOUT"
STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED, INTERRUPTED, TIMEOUT)

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
#: ``metric_chunks`` documents ({metric_id, run_id, name, seq, steps, values, timestamps}, and since the run page
#: the fields of :func:`chunk_summary`), one or more per batch of points the observer hands over. Kept small: MongoDB
#: rewrites the whole document on every heartbeat's ``$push`` and Omniboard draws every point of it.
METRIC_CAP = 20_000
#: Points per chunk document (and per journal record), about 1.5 MB of BSON.
CHUNK_POINTS = 50_000
#: Points per bucket of a chunk's ``preview``, which keeps each bucket's lowest and highest point (about 1,000 points
#: of a full chunk): an overview of a long series reads the previews, not every point, and shows every peak.
CHUNK_PREVIEW_BUCKET = 100


def chunk_summary(steps: list, values: list, timestamps: list) -> dict[str, Any]:
    """Fields a ``metric_chunks`` document carries beside its points, for range reads and overviews.

    ``first_step``/``last_step``: the lowest and highest step of the chunk; ``first_time``/``last_time``: the earliest
    and latest timestamp (left out unless every timestamp is a datetime); ``preview``: ``{steps, values,
    timestamps}``, the chunk's first and last point and the lowest and highest of every :data:`CHUNK_PREVIEW_BUCKET`
    points, in order (NaN skipped).
    Chunks written before these fields existed have none of them: readers then read the whole chunk. Never raises.
    """
    summary: dict[str, Any] = {}
    try:
        low_step, high_step = (min(steps), max(steps)) if steps else (None, None)
        if all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in (low_step, high_step)):
            summary.update(first_step=low_step, last_step=high_step)
        if timestamps and all(isinstance(t, _dt.datetime) for t in timestamps):
            summary.update(first_time=min(timestamps), last_time=max(timestamps))
        values = list(values)
        has_nan = any(v != v for v in values)  # only NaN differs from itself
        picks: list[int] = [0] if values else []
        for start in range(0, len(values), CHUNK_PREVIEW_BUCKET):
            part = values[start:start + CHUNK_PREVIEW_BUCKET]
            if has_nan:
                kept = [i for i, v in enumerate(part) if v == v]
                if not kept:
                    continue
                low, high = min(kept, key=part.__getitem__), max(kept, key=part.__getitem__)
            else:  # C-level min, max and index: no Python call per point
                low, high = part.index(min(part)), part.index(max(part))
            picks.extend(sorted({start + low, start + high}))
        picks = sorted(set(picks + [len(values) - 1])) if values else []
        summary["preview"] = {"steps": [steps[i] for i in picks], "values": [values[i] for i in picks],
                              "timestamps": [timestamps[i] for i in picks]}
    except Exception:  # noqa: BLE001 - odd points: the chunk is stored without a summary and read whole
        return {}
    return summary


#: Field of the run document holding each metric's roll-ups, kept current at every heartbeat so a runs table reads
#: no series: ``{<metric name, bson_key'd>: {count, sum, mean, first, first_step, last, last_step, min, min_step,
#: max, max_step}}``.
METRIC_ROLLUPS_FIELD = "metric_rollups"

#: Field of the run document holding the system roll-ups (tier 3), e.g. ``system.gpu_util_mean_pct``.
SYSTEM_FIELD = "system"

#: Time field and per-run field of a sample document; the other fields are metric names without ``sys/``.
SAMPLE_TIME = "t"
SAMPLE_RUN = "run_id"
#: Options of the time-series collection used for samples where the server has them (MongoDB 5.0+).
SAMPLES_TIMESERIES = {"timeField": SAMPLE_TIME, "metaField": SAMPLE_RUN, "granularity": "seconds"}


def sample_document(run_id: Any, time: _dt.datetime, values: dict[str, float]) -> dict[str, Any]:
    """A system sample as stored: ``{"t": time, "run_id": id, "gpu0/util_pct": 97.0, ...}``."""
    doc: dict[str, Any] = {SAMPLE_TIME: time, SAMPLE_RUN: run_id}
    doc.update((name.removeprefix("sys/"), value) for name, value in values.items())
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


# --------------------------------------------------------------------------------------------------------------
# Making arbitrary Python values storable, the way Sacred does.
# --------------------------------------------------------------------------------------------------------------

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_BSON_ATOMS = (str, bool, float, type(None), _dt.datetime, ObjectId, bytes, Int64)


def bson_key(key: Any) -> str:
    """A key MongoDB accepts, as Sacred's ``force_valid_bson_key`` makes it: ``.`` -> ``,``, leading ``$`` -> ``@``."""
    key = str(key)
    if key.startswith("$"):
        key = "@" + key[1:]
    return key.replace(".", ",")


def bson_safe(obj: Any) -> Any:
    """Return ``obj`` with every key made valid and every value BSON cannot hold turned into ``str``.

    Used for fields Sacred stores as they come (experiment, host, meta, artifact metadata). Numpy scalars
    become Python numbers, tuples and sets become lists. Never raises.
    """
    if isinstance(obj, dict):
        return {bson_key(k): bson_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [bson_safe(v) for v in obj]
    if isinstance(obj, int) and not isinstance(obj, bool):
        return obj if _INT64_MIN <= obj <= _INT64_MAX else str(obj)
    if isinstance(obj, _BSON_ATOMS):
        return obj
    item = getattr(obj, "item", None)  # numpy scalars and 0-d arrays
    if callable(item) and getattr(obj, "ndim", 1) == 0:
        try:
            return bson_safe(item())
        except Exception:  # noqa: BLE001 - any failure falls back to str, as Sacred does
            pass
    try:
        return str(obj)
    except Exception:  # noqa: BLE001
        return f"<unprintable {type(obj).__name__}>"


def flatten(obj: Any) -> Any:
    """Sacred's ``flatten`` (jsonpickle: numpy arrays, tuples, int keys encoded) followed by :func:`bson_safe`.

    Used for ``config``, ``info`` and ``result``, which Sacred flattens before storing. Never raises.
    """
    from sacred.serializer import flatten as sacred_flatten

    try:
        flat = sacred_flatten(obj)
    except Exception:  # noqa: BLE001 - jsonpickle can fail on exotic objects; keep the run going
        flat = obj
    return bson_safe(flat)


def metric_value(value: Any) -> int | float | None:
    """A logged scalar as a BSON number (numpy/torch scalars included), or ``None`` if it is not a number."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _INT64_MAX else float(value)
    if isinstance(value, float):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
