"""Every read of the store bounded on the server: finds, counts, aggregations and distincts carry MongoDB's
``maxTimeMS``, so that one slow filter (a regular expression over long text, a scan no index helps) cannot hold the
server or a board worker; a read stopped by it raises :class:`TooSlow`, which says so."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

from pymongo.errors import ExecutionTimeout

from sacred_gpu.read.errors import BadQuery

#: Milliseconds the server may spend on one read of the store (``RunStore.max_time_ms`` changes it per store).
MAX_TIME_MS = 5_000


class TooSlow(BadQuery):
    """MongoDB stopped a read at the store's time limit (``maxTimeMS``)."""


def _too_slow(exc: ExecutionTimeout, limit: int) -> TooSlow:
    return TooSlow(f"MongoDB stopped the query after {limit / 1000:g} s (the board's time limit, maxTimeMS): "
                   f"narrow the filter (a regular expression over long text or a filter on a field no index covers "
                   f"reads every run) [{type(exc).__name__}]")


class BoundedCursor:
    """A cursor whose iteration reports the time limit as :class:`TooSlow`; chained calls stay bounded."""

    def __init__(self, cursor: Any, limit: int) -> None:
        self._cursor, self._limit = cursor, limit

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._cursor, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            return self if result is self._cursor else result  # sort(), skip(), limit() return the cursor

        return call

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._cursor
        except ExecutionTimeout as exc:
            raise _too_slow(exc, self._limit) from exc


class BoundedCollection:
    """A collection whose reads carry ``maxTimeMS`` (``limit()`` milliseconds, read at each call); anything else
    is the collection's own."""

    def __init__(self, collection: Any, limit: Callable[[], int]) -> None:
        self.collection, self._limit = collection, limit

    def __getattr__(self, name: str) -> Any:
        return getattr(self.collection, name)

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except ExecutionTimeout as exc:
            raise _too_slow(exc, self._limit()) from exc

    def find(self, *args: Any, **kwargs: Any) -> BoundedCursor:
        limit = self._limit()
        return BoundedCursor(self.collection.find(*args, **kwargs).max_time_ms(limit), limit)

    def find_one(self, filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("max_time_ms", self._limit())
        return self._call(self.collection.find_one, filter, *args, **kwargs)

    def count_documents(self, filter: Any, **kwargs: Any) -> int:
        kwargs.setdefault("maxTimeMS", self._limit())
        return self._call(self.collection.count_documents, filter, **kwargs)

    def aggregate(self, pipeline: list, **kwargs: Any) -> BoundedCursor:
        limit = kwargs.setdefault("maxTimeMS", self._limit())
        return BoundedCursor(self._call(self.collection.aggregate, pipeline, **kwargs), limit)

    def distinct(self, key: str, filter: Any = None) -> list[Any]:
        """Distinct values of ``key``; bounded where the client takes ``maxTimeMS`` there (pymongo; mongomock runs
        no server and takes none)."""
        if _takes_keywords(self.collection.distinct):
            return self._call(self.collection.distinct, key, filter, maxTimeMS=self._limit())
        return self._call(self.collection.distinct, key, filter)


def _takes_keywords(method: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD or p.name == "maxTimeMS" for p in parameters)


class _Bounded:
    """A collection attribute of :class:`BoundedReads`: what is set is kept bounded (see ``BoundedReads._bounded``)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = f"_bounded{name}"

    def __get__(self, store: Any, owner: type | None = None) -> Any:
        return self if store is None else store.__dict__[self.key]

    def __set__(self, store: Any, collection: Any) -> None:
        store.__dict__[self.key] = store._bounded(collection)


class BoundedReads:
    """Mixed into the store: the collections it reads (``_runs``, ``_metrics``, ``_chunks``, ``_samples``, set by
    the store) are bounded by ``max_time_ms`` milliseconds."""

    max_time_ms: int = MAX_TIME_MS

    def _bounded(self, collection: Any) -> BoundedCollection:
        if isinstance(collection, BoundedCollection):
            return collection
        return BoundedCollection(collection, lambda: self.max_time_ms)

    _runs = _Bounded()
    _metrics = _Bounded()
    _chunks = _Bounded()
    _samples = _Bounded()
