"""Chunk documents' packed columns and their summaries (``schema/columns.py``)."""

from __future__ import annotations

import datetime as dt

import bson
import numpy as np
import pytest

from sacred_gpu import schema


def test_chunk_columns_pack_to_eight_bytes_a_point_and_read_back_as_bson_would_store_them():
    naive = [dt.datetime(2026, 1, 2, 3, 4, 5, 678_999) + dt.timedelta(milliseconds=i) for i in range(3)]
    aware = [t.replace(tzinfo=dt.timezone(dt.timedelta(hours=2))) for t in naive]
    cases = {"<i8": [0, 5, -(2**63)], "<f8": [0.5, float("nan"), float("inf")], "<M8[ms]": naive}
    for dtype, items in cases.items():
        packed = schema.pack_column(items)
        assert packed["dtype"] == dtype and len(packed["data"]) == 8 * len(items)
        back = schema.unpack_column(bson.decode(bson.encode({"c": packed}))["c"])
        as_bson = bson.decode(bson.encode({"c": items}))["c"]  # what a list would read back as
        if dtype == "<M8[ms]":
            assert back.astype(object).tolist() == as_bson == [t.replace(microsecond=678_000 + 1000 * i)
                                                                for i, t in enumerate(naive)]
        else:
            assert np.array_equal(back, np.array(as_bson), equal_nan=True) and back.dtype == np.dtype(dtype)
    aware_back = schema.unpack_column(schema.pack_column(aware)).astype(object).tolist()
    assert aware_back == [t - dt.timedelta(hours=2) for t in as_bson]  # aware: stored as UTC
    # anything not all of one packable kind is stored as the list it is
    for odd in ([1, 2.5], [True, False], [2**64], [None, None], ["a"], [np.float32(1.0)], []):
        assert schema.pack_column(odd) == odd and schema.unpack_column(schema.pack_column(odd)) == odd
    for hostile in ({"dtype": "object", "data": b"\0" * 8}, {"dtype": "<f8", "data": b"\0" * 7}, "1,2", None):
        with pytest.raises(ValueError, match="not a chunk column"):
            schema.unpack_column(hostile)


def test_chunk_summary_of_packed_columns_equals_that_of_lists():
    rng = np.random.default_rng(3)
    values = rng.normal(size=1_234).tolist()
    values[7] = float("nan")
    values[200:300] = [float("nan")] * 100  # a bucket of NaN only
    values[500] = 99.0
    steps = list(range(1_000, 2_234))
    stamps = [dt.datetime(2026, 1, 1) + dt.timedelta(seconds=i) for i in range(1_234)]
    packed = schema.chunk_summary(*(schema.unpack_column(schema.pack_column(c)) for c in (steps, values, stamps)))
    listed = schema.chunk_summary(steps, values, stamps)
    assert packed["first_step"] == listed["first_step"] == 1_000 and packed["last_step"] == 2_233
    assert packed["first_time"] == stamps[0] and packed["last_time"] == stamps[-1]
    assert bson.encode(packed) == bson.encode(listed)  # same fields, same plain Python values
    preview = packed["preview"]
    assert preview["steps"][0] == 1_000 and preview["steps"][-1] == 2_233 and 99.0 in preview["values"]
    assert not any(1_200 <= s < 1_300 for s in preview["steps"])  # the all-NaN bucket has no point
    assert len(preview["steps"]) <= 2 + 2 * 13 and preview["steps"] == sorted(preview["steps"])
    assert schema.chunk_summary([1, 2], ["a", "b"], [None, None]) == {}  # odd points: read whole
