"""One classification of database errors for every writer: transient (retry), permanent (set this record aside)."""

from __future__ import annotations

import bson.errors
import pytest
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    DocumentTooLarge,
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    NotPrimaryError,
    OperationFailure,
    ServerSelectionTimeoutError,
    WriteConcernError,
    WriteError,
)

from sacred_gpu import errors
from sacred_gpu.errors import PERMANENT, TRANSIENT, UNKNOWN, RecordRefused


def bulk(*codes: int) -> BulkWriteError:
    return BulkWriteError({"writeErrors": [{"index": i, "code": code, "errmsg": "x"} for i, code in enumerate(codes)],
                           "nInserted": 0})


@pytest.mark.parametrize("error, kind", [
    (AutoReconnect("connection reset"), TRANSIENT),
    (NetworkTimeout("timed out"), TRANSIENT),
    (ServerSelectionTimeoutError("no servers"), TRANSIENT),
    (NotPrimaryError("not primary", {"code": 10107}), TRANSIENT),
    (OperationFailure("not writable primary", 10107), TRANSIENT),
    (OperationFailure("exceeded time limit", 262), TRANSIENT),
    (OperationFailure("shutting down", 91), TRANSIENT),
    (OperationFailure("unauthorized", 13), TRANSIENT),
    (OperationFailure("retry me", 999, {"errorLabels": ["RetryableWriteError"]}), TRANSIENT),
    (ExecutionTimeout("operation exceeded time limit", 50), TRANSIENT),
    (WriteConcernError("waiting for replication timed out", 64), TRANSIENT),
    (bulk(91, 91), TRANSIENT),
    (WriteError("Document failed validation", 121), PERMANENT),
    (DuplicateKeyError("E11000 duplicate key", 11000), PERMANENT),
    (DocumentTooLarge("BSON document too large"), PERMANENT),
    (bson.errors.InvalidDocument("key 'a\x00b' must not contain NUL"), PERMANENT),
    (OperationFailure("document too large", 10334), PERMANENT),
    (bulk(91, 121), PERMANENT),
    (FileNotFoundError("spooled file gone"), PERMANENT),
    (RecordRefused("run 3 has no document"), PERMANENT),
    (KeyError("op"), UNKNOWN),
    (OSError(5, "Input/output error"), UNKNOWN),
])
def test_classify(error, kind):
    assert errors.classify(error) is kind


@pytest.mark.parametrize(("exc", "refused"), [
    (WriteError("The dotted field 'a.b' in 'info.a.b' is not valid for storage.", 57, {}), True),
    (WriteError("The dollar ($) prefixed field '$x' in 'info.$x' is not valid for storage.", 52, {}), True),
    (OperationFailure("Document can't have $ prefixed field names: $x", 2,
                      {"errmsg": "Document can't have $ prefixed field names: $x"}), True),
    (OperationFailure("bad value", 2, {"errmsg": "bad value"}), False),
    (WriteError("Document failed validation", 121, {}), False),
    (ValueError("x.y"), False),
])
def test_refused_field_names_are_told_from_other_refusals(exc, refused):
    assert errors.refused_field_names(exc) is refused
