"""What a failed database call means, decided in one place for every writer of sacred-gpu.

* ``TRANSIENT``: the database cannot take writes now (network, timeouts, failover, a server shutting down,
  missing credentials); the same write may succeed later. Retried; may turn a run offline.
* ``PERMANENT``: the database refused this very record (a write error, a document too large or not encodable, a
  spooled file gone); retrying cannot help. Only that record is set aside, in the quarantine.
* ``UNKNOWN``: anything else (a bug, an odd driver error): retried a few times, then set aside.
"""

from __future__ import annotations

import enum

import bson.errors
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WriteError,
    WTimeoutError,
)


class Kind(enum.Enum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"


TRANSIENT, PERMANENT, UNKNOWN = Kind.TRANSIENT, Kind.PERMANENT, Kind.UNKNOWN

#: Server error codes that say "not now" rather than "not this": network and host errors, failover and
#: elections, shutdowns, time limits, write-concern trouble, and authentication (credentials can be fixed).
TRANSIENT_CODES = frozenset({
    6,      # HostUnreachable
    7,      # HostNotFound
    13,     # Unauthorized
    18,     # AuthenticationFailed
    24,     # LockTimeout
    50,     # MaxTimeMSExpired
    64,     # WriteConcernFailed
    89,     # NetworkTimeout
    91,     # ShutdownInProgress
    100,    # UnsatisfiableWriteConcern
    112,    # WriteConflict
    133,    # FailedToSatisfyReadPreference
    189,    # PrimarySteppedDown
    262,    # ExceededTimeLimit
    9001,   # SocketException
    10058,  # LegacyNotPrimary
    10107,  # NotWritablePrimary
    11600,  # InterruptedAtShutdown
    11602,  # InterruptedDueToReplStateChange
    13435,  # NotPrimaryNoSecondaryOk
    13436,  # NotPrimaryOrSecondary
})


def classify(exc: BaseException) -> Kind:
    """Whether ``exc``, raised by a database call, is transient, permanent or unknown (see the module)."""
    if isinstance(exc, (ConnectionFailure, ExecutionTimeout, WTimeoutError)):
        return TRANSIENT
    if isinstance(exc, PyMongoError) and (exc.timeout or exc.has_error_label("RetryableWriteError")
                                          or exc.has_error_label("TransientTransactionError")):
        return TRANSIENT
    if isinstance(exc, BulkWriteError):
        details = exc.details or {}
        codes = {error.get("code") for error in details.get("writeErrors", [])}
        if details.get("writeConcernErrors") or (codes and codes <= TRANSIENT_CODES):
            return TRANSIENT
        return PERMANENT
    if isinstance(exc, WriteError):
        return TRANSIENT if exc.code in TRANSIENT_CODES else PERMANENT
    if isinstance(exc, OperationFailure):
        return TRANSIENT if exc.code in TRANSIENT_CODES else PERMANENT
    if isinstance(exc, (bson.errors.InvalidDocument, bson.errors.InvalidStringData, bson.errors.InvalidBSON,
                        OverflowError, FileNotFoundError, RecordRefused)):
        return PERMANENT  # DocumentTooLarge is an InvalidDocument
    return UNKNOWN


#: Codes of a server refusing field names: DollarPrefixedFieldName, InvalidDBRef (``$ref``/``$id``), DottedFieldName.
FIELD_NAME_CODES = frozenset({52, 55, 57})


def refused_field_names(exc: BaseException) -> bool:
    """Whether ``exc`` is a server refusing a document for ``.`` or ``$`` in its field names (MongoDB before 5.0
    does, and 5.0 and later in some updates)."""
    if not isinstance(exc, (WriteError, OperationFailure)) or isinstance(exc, BulkWriteError):
        return False
    message = str((exc.details or {}).get("errmsg", exc)).lower()
    return exc.code in FIELD_NAME_CODES or (exc.code == 2 and "field" in message
                                            and any(word in message for word in ("prefixed", "dotted", "'.'")))


def is_transient(exc: BaseException) -> bool:
    return classify(exc) is TRANSIENT


class RecordRefused(Exception):
    """A record the database cannot take, for a reason found by the writer (e.g. its run document is missing)."""

