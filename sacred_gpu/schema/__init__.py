"""The one owner of what sacred-gpu stores: every document field (Sacred's and ours), the statuses and the dead rule,
the metric catalog, how values and keys are made storable, and how long series and large values are kept.

Every module reads it as ``from sacred_gpu import schema`` and ``schema.<name>``:

- :mod:`.runs`: the run document, its collections, statuses, the dead rule, formats, series owners, indexes.
- :mod:`.columns`: Sacred's metric document cap, chunk documents and their packed columns.
- :mod:`.storable`: keys and values made storable (Sacred's way, and what Sacred misses); roll-up keys.
- :mod:`.stubs`: values too large for a run document, moved to GridFS.
- :mod:`.catalog`: every system metric, with its unit, tier, window, summary and panel.
"""

from __future__ import annotations

from sacred_gpu.schema import catalog
from sacred_gpu.schema.columns import (
    CHUNK_POINTS,
    CHUNK_PREVIEW_BUCKET,
    METRIC_CAP,
    PACKED_DTYPES,
    chunk_summary,
    pack_column,
    unpack_column,
    update_rollup,
)
from sacred_gpu.schema.runs import (
    BOARD_SETTINGS,
    COMPLETED,
    COUNTERS,
    DEAD_AFTER,
    FAILED,
    FOREIGN_FIELDS,
    FORMAT,
    FORMATS,
    GRIDFS_BUCKET,
    GRIDFS_INDEXES,
    INDEXES,
    INTERRUPTED,
    METRIC_ROLLUPS_FIELD,
    OMNIBOARD_CUSTOM_COLUMNS,
    OMNIBOARD_EXTREMA,
    OMNIBOARD_METRIC_COLUMNS,
    ORIGIN,
    OUTPUT_CAP,
    OUTPUT_MARKER,
    PROBABLY_DEAD,
    QUEUED,
    ROLLUPS,
    RUNNING,
    SAMPLE_RUN,
    SAMPLE_TIME,
    SAMPLES_TIMESERIES,
    STATUSES,
    SYSTEM_FIELD,
    SYSTEM_ORIGIN,
    SYSTEM_PREFIX,
    TIMEOUT,
    Collections,
    artifact_filename,
    cap_output,
    is_probably_dead,
    new_object_id,
    probably_dead_filter,
    sample_document,
    series_filter,
    series_names,
)
from sacred_gpu.schema.storable import (
    MAX_DEPTH,
    NUL_REPLACEMENT,
    bson_key,
    bson_safe,
    decoded,
    find_rollup,
    flatten,
    legacy_owner,
    legacy_rollup_key,
    metric_value,
    rollup_key,
    rollup_name,
    sacred_keys,
    storable_key,
)
from sacred_gpu.schema.stubs import (
    MAX_DOCUMENT,
    STUB_BUDGET,
    STUB_MARKER,
    STUB_STORE,
    STUB_THRESHOLD,
    LargeValue,
    is_stub,
    label_stubs,
    load_stub,
    resolve_stubs,
    stub_file_ids,
    stub_filename,
    stub_label,
    stub_large_values,
)

__all__ = [
    "BOARD_SETTINGS", "CHUNK_POINTS", "CHUNK_PREVIEW_BUCKET", "COMPLETED", "COUNTERS", "DEAD_AFTER", "FAILED",
    "FOREIGN_FIELDS", "FORMAT", "FORMATS", "GRIDFS_BUCKET", "GRIDFS_INDEXES", "INDEXES", "INTERRUPTED", "MAX_DEPTH",
    "MAX_DOCUMENT", "METRIC_CAP", "METRIC_ROLLUPS_FIELD", "NUL_REPLACEMENT", "OMNIBOARD_CUSTOM_COLUMNS",
    "OMNIBOARD_EXTREMA", "OMNIBOARD_METRIC_COLUMNS", "ORIGIN", "OUTPUT_CAP", "OUTPUT_MARKER", "PACKED_DTYPES",
    "PROBABLY_DEAD", "QUEUED", "ROLLUPS", "RUNNING", "SAMPLES_TIMESERIES", "SAMPLE_RUN", "SAMPLE_TIME", "STATUSES",
    "STUB_BUDGET", "STUB_MARKER", "STUB_STORE", "STUB_THRESHOLD", "SYSTEM_FIELD", "SYSTEM_ORIGIN", "SYSTEM_PREFIX",
    "TIMEOUT", "Collections", "LargeValue", "artifact_filename", "bson_key", "bson_safe", "cap_output", "catalog",
    "chunk_summary", "decoded", "find_rollup", "flatten", "is_probably_dead", "is_stub", "label_stubs", "legacy_owner",
    "legacy_rollup_key", "load_stub", "metric_value", "new_object_id", "pack_column", "probably_dead_filter",
    "resolve_stubs", "rollup_key", "rollup_name", "sacred_keys", "sample_document", "series_filter", "series_names",
    "storable_key", "stub_file_ids", "stub_filename", "stub_label", "stub_large_values", "unpack_column",
    "update_rollup",
]
