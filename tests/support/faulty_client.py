"""A fault-injecting MongoDB client: mongomock behind it, pymongo's own errors in front of it, on cue.

    client = FaultyClient(mongomock.MongoClient())
    client.outage(AutoReconnect)                 # every call fails from now on ...
    client.restore()                             # ... until restored
    client.outage(ServerSelectionTimeoutError, seconds=60, clock=fake_clock)   # or for a window of time
    client.fail_next_batch_after(3)              # the next insert_many stores 3 documents, then a write error

Reads and writes through databases and collections (GridFS included) go through the same checks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import mongomock
from pymongo.errors import BulkWriteError, PyMongoError

_PASS_THROUGH = {"name", "full_name", "database", "codec_options", "read_preference", "write_concern",
                 "read_concern", "__class__"}


class FaultyClient:
    """Wraps a mongomock client; ``outage`` makes every database call raise the given pymongo error."""

    def __init__(self, inner: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self._clock = clock
        self._error: type[PyMongoError] | None = None
        self._until: float | None = None
        self._batch_failure: int | None = None
        self._lock = threading.Lock()
        self.failures = 0  #: calls refused so far
        self.calls = 0

    # -- cues -----------------------------------------------------------------------------------------------------
    def outage(self, error: type[PyMongoError], seconds: float | None = None,
               clock: Callable[[], float] | None = None) -> None:
        if clock is not None:
            self._clock = clock
        with self._lock:
            self._error = error
            self._until = None if seconds is None else self._clock() + seconds

    def restore(self) -> None:
        with self._lock:
            self._error, self._until = None, None

    def fail_next_batch_after(self, count: int) -> None:
        self._batch_failure = count

    def check(self) -> None:
        """Raise the current outage's error, if any."""
        with self._lock:
            self.calls += 1
            if self._error is None:
                return
            if self._until is not None and self._clock() >= self._until:
                self._error, self._until = None, None
                return
            self.failures += 1
            error = self._error
        raise error(f"injected {error.__name__}")

    # -- the client API -------------------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> _FaultyDatabase:
        return _FaultyDatabase(self.inner[name], self)

    def get_database(self, name: str, **kwargs: Any) -> _FaultyDatabase:
        return _FaultyDatabase(self.inner.get_database(name, **kwargs), self)

    def server_info(self) -> dict:
        self.check()
        return self.inner.server_info()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _Proxy:
    def __init__(self, inner: Any, faults: FaultyClient) -> None:
        self._inner, self._faults = inner, faults

    @property
    def __class__(self) -> type:  # noqa: D105 - isinstance(proxy, Database) holds, as GridFS requires
        return type(self._inner)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if isinstance(attribute, mongomock.Collection):
            return _FaultyCollection(attribute, self._faults)  # GridFS reaches files/chunks as attributes
        if name in _PASS_THROUGH or not callable(attribute):
            return attribute

        def checked(*args: Any, **kwargs: Any) -> Any:
            self._faults.check()
            return attribute(*args, **kwargs)

        return checked


class _FaultyDatabase(_Proxy):
    @property
    def client(self) -> FaultyClient:
        return self._faults

    def with_options(self, *args: Any, **kwargs: Any) -> _FaultyDatabase:
        return _FaultyDatabase(self._inner.with_options(*args, **kwargs), self._faults)

    def __getitem__(self, name: str) -> _FaultyCollection:
        return _FaultyCollection(self._inner[name], self._faults)


class _FaultyCollection(_Proxy):
    def __getitem__(self, name: str) -> _FaultyCollection:
        return _FaultyCollection(self._inner[name], self._faults)

    def insert_many(self, documents: Any, ordered: bool = True, **kwargs: Any) -> Any:
        self._faults.check()
        documents = list(documents)
        count, self._faults._batch_failure = self._faults._batch_failure, None
        if count is None:
            return self._inner.insert_many(documents, ordered=ordered, **kwargs)
        if count:
            self._inner.insert_many(documents[:count], ordered=ordered, **kwargs)
        raise BulkWriteError({"writeErrors": [{"index": count, "code": 91, "errmsg": "injected: shutting down"}],
                              "nInserted": count})
