"""The index plan check: every query the read side sends, recorded, and a small model of how MongoDB's planner picks
an index for it (equality fields, then the sort, then one range field, as a prefix of one index).

:func:`serving_index` is the rule; :class:`QueryLog` records queries by wrapping mongomock's collection methods
(every collection, GridFS's included) while it is active."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import mongomock

from sacred_gpu import schema

Keys = tuple[tuple[str, int], ...]

#: Indexes GridFS's driver creates itself on the bucket's collections (pymongo's ``GridFS`` on first write);
#: the writer declares none of these.
GRIDFS_DRIVER_INDEXES: dict[str, tuple[Keys, ...]] = {
    "files": ((("filename", 1), ("uploadDate", 1)),),
    "chunks": ((("files_id", 1), ("n", 1)),),
}


def declared_indexes(collections: schema.Collections | None = None) -> dict[str, list[Keys]]:
    """Every index a collection has once ``MongoWriter.ensure_indexes`` ran, by collection name: the schema's
    declarations, GridFS's (declared and the driver's own) and the implicit ``_id`` index of every collection."""
    collections = collections or schema.Collections()
    found: dict[str, list[Keys]] = {}
    for attribute, keys in schema.INDEXES:
        found.setdefault(getattr(collections, attribute), []).append(tuple(keys))
    files, chunks = f"{schema.GRIDFS_BUCKET}.files", f"{schema.GRIDFS_BUCKET}.chunks"
    found.setdefault(files, []).extend(tuple(keys) for keys in schema.GRIDFS_INDEXES)
    found[files].extend(GRIDFS_DRIVER_INDEXES["files"])
    found.setdefault(chunks, []).extend(GRIDFS_DRIVER_INDEXES["chunks"])
    return found


@dataclass
class Query:
    """One read as sent: ``collection``, ``operation`` (find, find_one, count_documents, aggregate, distinct), its
    ``filter``, ``sort`` (what the server can take from an index: an aggregation's ``$sort`` right after its
    ``$match``) and ``projection``."""

    collection: str
    operation: str
    filter: dict[str, Any]
    sort: Keys = ()
    projection: Any = None

    def shape(self) -> tuple[str, str, str, Keys]:
        """What the planner sees, values left out: for counting distinct queries."""
        return self.collection, self.operation, repr(_shape(self.filter)), self.sort


def _shape(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list) and any(isinstance(item, Mapping) for item in value):
        return [_shape(item) for item in value]
    return "?"


# -- the rule ------------------------------------------------------------------------------------------------------
@dataclass
class Predicates:
    """A filter's top-level predicates (``$and`` flattened): fields compared for equality, fields in an ``$in``,
    fields with any other condition (a range for the planner: ``$lt``, ``$ne``, ``$exists``, ``$regex`` ...), and the
    ``$or``/``$nor`` clauses, which the planner applies to the documents an index found."""

    equal: set[str] = field(default_factory=set)
    within: set[str] = field(default_factory=set)
    ranged: set[str] = field(default_factory=set)
    clauses: list[Any] = field(default_factory=list)


def predicates(filter: Mapping[str, Any] | None) -> Predicates:
    """The top-level predicates of ``filter``, each field classified once (equality wins where it is compared for
    equality in one ``$and`` branch and otherwise in another: the bounds are a point either way)."""
    found = Predicates()

    def visit(part: Mapping[str, Any]) -> None:
        for key, value in part.items():
            if key == "$and":
                for branch in value:
                    visit(branch)
            elif key in ("$or", "$nor"):
                found.clauses.append({key: value})
            elif key.startswith("$"):
                raise ValueError(f"top-level operator {key!r} is not modelled")
            elif not isinstance(value, Mapping) or not any(str(op).startswith("$") for op in value):
                found.equal.add(key)  # a value, None included: point bounds
            elif set(value) == {"$eq"}:
                found.equal.add(key)
            elif set(value) == {"$in"}:
                found.within.add(key)
            else:
                found.ranged.add(key)

    visit(filter or {})
    found.within -= found.equal
    found.ranged -= found.equal | found.within
    return found


def serving_index(filter: Mapping[str, Any] | None, sort: Sequence[tuple[str, int]],
                  indexes: Iterable[Sequence[tuple[str, int]]]) -> tuple[tuple[str, int], ...] | None:
    """The first of ``indexes`` that serves a query (``filter`` and ``sort``) as MongoDB's planner would use it, or
    None. An index serves where, in its key order:

    1. the query's equality fields (in any order among themselves) are its first keys; an ``$in`` counts as
       equality if no sort follows it, else as a range;
    2. then the sort fields, in the index's order and directions, or all reversed (a sort on an equality field
       orders nothing and is left out);
    3. then at most one range field (a range on a sort field is bounded by the sort's own key).

    Every top-level field predicate must fit: a field no index covers means reading every document. ``$or`` and
    ``$nor`` clauses are filters on what the index found (MongoDB plans an ``$or`` beside other predicates that way;
    a ``$nor`` never uses an index). ``_id`` is always indexed. A query with neither a field predicate nor a sort
    reads the whole collection: no index serves it (callers allow such reads one by one)."""
    found = predicates(filter)
    order = tuple((name, direction) for name, direction in sort if name not in found.equal)
    equal = found.equal | (found.within if not order else set())
    ranged = (found.ranged | (found.within if order else set())) - {name for name, _ in order}
    if not equal and not order and not ranged:
        return None
    if len(ranged) > 1:
        return None
    for keys in [*indexes, (("_id", 1),)]:
        keys = tuple((name, direction) for name, direction in keys)
        head, rest = keys[:len(equal)], keys[len(equal):]
        if len(head) < len(equal) or {name for name, _ in head} != equal:
            continue
        middle, rest = rest[:len(order)], rest[len(order):]
        reversed_order = tuple((name, -direction) for name, direction in order)
        if order and middle not in (order, reversed_order):
            continue
        if ranged and (not rest or rest[0][0] not in ranged):
            continue
        return keys
    return None


def without_fields(filter: Mapping[str, Any], sort: Sequence[tuple[str, int]],
                   paths: Iterable[str]) -> tuple[dict[str, Any], Keys]:
    """``filter`` and ``sort`` without the top-level predicates (``$and`` flattened) and sort keys on ``paths``:
    fields a person names (a config key, a metric's roll-up), which no index declared in advance can hold."""
    paths = set(paths)
    kept: list[dict[str, Any]] = []

    def visit(part: Mapping[str, Any]) -> None:
        for key, value in part.items():
            if key == "$and":
                for branch in value:
                    visit(branch)
            elif key not in paths:
                kept.append({key: value})

    visit(filter)
    merged = kept[0] if len(kept) == 1 else ({"$and": kept} if kept else {})
    return merged, tuple((name, direction) for name, direction in sort if name not in paths)


# -- recording ------------------------------------------------------------------------------------------------------
def _sort_keys(sort: Any) -> Keys:
    if not sort:
        return ()
    if isinstance(sort, str):
        return ((sort, 1),)
    if isinstance(sort, Mapping):
        return tuple((str(name), int(direction)) for name, direction in sort.items())
    return tuple((str(name), int(direction)) for name, direction in sort)


def _pipeline_query(collection: str, pipeline: Sequence[Mapping[str, Any]]) -> Query:
    """What of a pipeline the query layer sees: its leading ``$match`` and a ``$sort`` right after it (or first)."""
    stages = list(pipeline)
    match: dict[str, Any] = {}
    if stages and "$match" in stages[0]:
        match = dict(stages.pop(0)["$match"])
    sort = _sort_keys(stages[0]["$sort"]) if stages and "$sort" in stages[0] else ()
    return Query(collection, "aggregate", match, sort)


class _RecordingCursor:
    """A cursor whose ``sort`` is written into its query's record."""

    def __init__(self, cursor: Any, query: Query) -> None:
        self._cursor, self._query = cursor, query

    def sort(self, key: Any, direction: int | None = None) -> _RecordingCursor:
        self._query.sort = _sort_keys([(key, direction or 1)] if isinstance(key, str) else key)
        self._cursor = self._cursor.sort(key, direction) if direction is not None else self._cursor.sort(key)
        return self

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._cursor, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            if result is self._cursor:
                return self
            return result

        return call

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)

    def __next__(self) -> Any:
        return next(self._cursor)


class QueryLog:
    """Reads sent to any mongomock collection while :meth:`recording` is active, in order."""

    def __init__(self) -> None:
        self.queries: list[Query] = []

    @contextmanager
    def recording(self, monkeypatch: Any) -> Iterator[QueryLog]:
        """Record every find, find_one, count_documents, aggregate and distinct until the block ends (a read that
        mongomock makes of another, such as ``find_one`` by ``find``, once)."""
        cls = mongomock.collection.Collection
        originals = {name: getattr(cls, name) for name in ("find", "find_one", "count_documents", "aggregate",
                                                            "distinct")}
        busy = [False]

        def recorded(name: str, describe: Any) -> Any:
            method = originals[name]

            def read(collection: Any, *args: Any, **kwargs: Any) -> Any:
                if busy[0]:
                    return method(collection, *args, **kwargs)
                query = describe(collection.name, *args, **kwargs)
                self.queries.append(query)
                busy[0] = True
                try:
                    result = method(collection, *args, **kwargs)
                finally:
                    busy[0] = False
                return _RecordingCursor(result, query) if name == "find" else result

            return read

        def find(name: str, filter: Any = None, projection: Any = None, *_: Any, **kwargs: Any) -> Query:
            return Query(name, "find", dict(filter or {}), _sort_keys(kwargs.get("sort")),
                         projection if projection is not None else kwargs.get("projection"))

        def find_one(name: str, filter: Any = None, *args: Any, **kwargs: Any) -> Query:
            selector = filter if isinstance(filter, Mapping) or filter is None else {"_id": filter}
            return Query(name, "find_one", dict(selector or {}), _sort_keys(kwargs.get("sort")),
                         args[0] if args else kwargs.get("projection"))

        def count(name: str, filter: Any = None, *_: Any, **__: Any) -> Query:
            return Query(name, "count_documents", dict(filter or {}))

        def aggregate(name: str, pipeline: Any, *_: Any, **__: Any) -> Query:
            return _pipeline_query(name, pipeline)

        def distinct(name: str, key: str, filter: Any = None, *_: Any, **__: Any) -> Query:
            return Query(name, "distinct", dict(filter or {}), (), {key: 1})

        for name, describe in (("find", find), ("find_one", find_one), ("count_documents", count),
                               ("aggregate", aggregate), ("distinct", distinct)):
            monkeypatch.setattr(cls, name, recorded(name, describe))
        read_distinct = cls.distinct

        def distinct_as_mongomock(collection: Any, key: str, filter: Any = None) -> Any:
            return read_distinct(collection, key, filter)  # mongomock's signature: no maxTimeMS to take

        monkeypatch.setattr(cls, "distinct", distinct_as_mongomock)
        estimate = cls.estimated_document_count

        def from_metadata(collection: Any, **kwargs: Any) -> int:
            busy[0] = True  # the server reads its metadata (mongomock counts documents): no query to check
            try:
                return estimate(collection, **kwargs)
            finally:
                busy[0] = False

        monkeypatch.setattr(cls, "estimated_document_count", from_metadata)
        try:
            yield self
        finally:
            for name, method in [*originals.items(), ("estimated_document_count", estimate)]:
                monkeypatch.setattr(cls, name, method)

    def take(self) -> list[Query]:
        """The queries recorded since the last call."""
        taken, self.queries = self.queries, []
        return taken
