"""MongoDB commands answered from a mongomock client, with the replies (and errors) a real mongod gives.

:class:`CommandBackend` runs one decoded command body (``{"find": "runs", "filter": ..., "$db": "sacred"}``) and
returns the reply document; it is the half of :mod:`tests.support.wire_server` that knows no sockets.

* Cursors (``find``, ``aggregate``, ``listCollections``, ``listIndexes``) are fully materialized; the first batch
  holds ``batchSize`` documents (101 by default), later batches come from ``getMore``; a batch never passes 16 MiB.
* Write errors come back as a server sends them, ``{"ok": 1, "n": k, "writeErrors": [{"index", "code",
  "errmsg"}]}``; command errors as ``{"ok": 0, "errmsg", "code", "codeName"}``.
* Documents over 16 MiB are refused as mongod refuses them: an insert with code 2 ("object to insert too large"),
  an update with 17419 ("Resulting document after update is larger than 16777216"), an upsert with 17420
  ("Document to upsert is larger than 16777216"); the update is undone. pymongo leaves this limit to the server
  (it raises DocumentTooLarge itself only past maxMessageSizeBytes, 48 MB), so this is the check a client meets.
* Retryable writes: an insert that carries ``lsid`` and ``txnNumber`` records which of its statements (document
  indexes) were stored; a retry of the same (session, txnNumber) skips those, as mongod does. So a batch cut
  short by a dropped connection completes on pymongo's retry instead of failing with duplicate keys.
* ``create`` keeps its options (``timeseries`` included) for ``listCollections``; the collection itself is plain.

Commands: hello's siblings are the server's (wire_server); here ping, buildInfo, find, getMore, killCursors,
aggregate, count, distinct, insert, update, delete, findAndModify, listCollections, create, createIndexes,
listIndexes, drop, dropDatabase, listDatabases, endSessions. Others answer 59 CommandNotFound. Session,
read-preference, write- and read-concern fields are accepted and ignored (``txnNumber`` only serves the
retried-insert bookkeeping above). mongomock is not thread-safe: every command runs under
:attr:`CommandBackend.lock`.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bson
import mongomock
from bson.int64 import Int64
from bson.raw_bson import RawBSONDocument
from mongomock import filtering
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, OperationFailure

logger = logging.getLogger(__name__)

MAX_BSON_SIZE = 16 * 1024 * 1024
DEFAULT_FIRST_BATCH = 101
#: Fields any command may carry that say nothing about what it does.
GENERIC_FIELDS = frozenset({
    "$db", "lsid", "txnNumber", "$clusterTime", "$readPreference", "readConcern", "writeConcern", "comment",
    "maxTimeMS", "apiVersion", "apiStrict", "apiDeprecationErrors", "autocommit", "startTransaction", "stmtId",
    "stmtIds", "bypassDocumentValidation", "let",
})
CODE_NAMES = {
    2: "BadValue", 8: "UnknownError", 14: "TypeMismatch", 26: "NamespaceNotFound", 43: "CursorNotFound",
    48: "NamespaceExists", 59: "CommandNotFound", 73: "InvalidNamespace", 85: "IndexOptionsConflict",
    86: "IndexKeySpecsConflict", 115: "CommandNotSupported", 121: "DocumentValidationFailure",
    10107: "NotWritablePrimary", 10334: "BSONObjectTooLarge", 11000: "DuplicateKey",
}

#: ``write_check(database, collection, kind, item)``: a write error ``{"code", "errmsg"}`` for one insert document
#: (kind "insert") or update statement (kind "update": ``{"q", "u", "upsert", "multi"}``), or None to let it pass.
WriteCheck = Callable[[str, str, str, dict[str, Any]], "dict[str, Any] | None"]


class CommandError(Exception):
    """A command that fails as a whole: ``{"ok": 0, ...}``."""

    def __init__(self, code: int, errmsg: str, labels: list[str] | None = None) -> None:
        super().__init__(errmsg)
        self.code, self.errmsg, self.labels = code, errmsg, labels or []

    def reply(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"ok": 0.0, "errmsg": self.errmsg, "code": self.code,
                               "codeName": CODE_NAMES.get(self.code, f"Location{self.code}")}
        if self.labels:
            doc["errorLabels"] = self.labels
        return doc


class _StatementError(Exception):
    """One write statement failed; the command goes on (or stops, if ordered) with a writeError."""

    def __init__(self, code: int, errmsg: str) -> None:
        super().__init__(errmsg)
        self.code, self.errmsg = code, errmsg


def bson_size(doc: Any) -> int:
    return len(bson.encode(doc))


def _error_from_exception(exc: Exception) -> tuple[int, str]:
    """The (code, message) a server would give for what mongomock raised."""
    if isinstance(exc, _StatementError):
        return exc.code, exc.errmsg
    if isinstance(exc, DuplicateKeyError):
        return 11000, str(exc) if str(exc).startswith("E11000") else f"E11000 duplicate key error: {exc}"
    if isinstance(exc, OperationFailure) and exc.code:
        return exc.code, str(exc)
    if isinstance(exc, TypeError):
        return 14, str(exc)
    if isinstance(exc, NotImplementedError):
        logger.warning("wire server: mongomock does not implement this: %s", exc)
        return 115, f"not supported by the test server (mongomock): {exc}"
    if "already exists with different options" in str(exc):
        return 85, str(exc)
    return 2, str(exc)


def _sort_list(sort: dict[str, Any] | None) -> list[tuple[str, Any]] | None:
    """A wire sort document as mongomock takes it (directions as ints: 1.0 and Int64(1) arrive too)."""
    if not sort:
        return None
    return [(key, int(direction) if isinstance(direction, (int, float)) else direction)
            for key, direction in sort.items()]


@dataclass
class _Cursor:
    ns: str
    documents: list[RawBSONDocument]


class CommandBackend:
    """Runs commands against ``client`` (a mongomock client), one at a time under :attr:`lock`."""

    def __init__(self, client: mongomock.MongoClient | None = None,
                 write_check: WriteCheck | None = None) -> None:
        self.client = client if client is not None else mongomock.MongoClient()
        self.lock = threading.RLock()
        self.write_check = write_check
        self._cursors: dict[int, _Cursor] = {}
        self._cursor_ids = itertools.count(1_000_001)
        self._options: dict[tuple[str, str], dict[str, Any]] = {}  # (db, collection) -> create options
        self._stored_statements: dict[tuple[bytes, int], set[int]] = {}  # (lsid, txnNumber) -> insert indexes
        self._handlers: dict[str, Callable[[Any, dict[str, Any]], dict[str, Any]]] = {
            name[len("_cmd_"):]: getattr(self, name) for name in dir(self) if name.startswith("_cmd_")
        }
        self._handlers["buildinfo"] = self._cmd_buildInfo  # the one alias mongod keeps besides isMaster's

    @property
    def open_cursors(self) -> int:
        """How many cursors still hold documents for a getMore."""
        with self.lock:
            return len(self._cursors)

    # -- dispatch ---------------------------------------------------------------------------------------------------
    def run(self, body: dict[str, Any]) -> dict[str, Any]:
        """The reply to one command body (``$db`` names the database)."""
        name = next(iter(body), "")
        handler = self._handlers.get(name)
        if handler is None:
            return CommandError(59, f"no such command: '{name}'").reply()
        try:
            with self.lock:
                reply = handler(self.client[body.get("$db", "admin")], body)
        except CommandError as exc:
            return exc.reply()
        except Exception as exc:  # what mongomock raises becomes the server error a client would see
            code, errmsg = _error_from_exception(exc)
            logger.debug("wire server: %s failed: %s", name, errmsg)
            return CommandError(code, errmsg).reply()
        reply.setdefault("ok", 1.0)
        return reply

    # -- cursors ----------------------------------------------------------------------------------------------------
    def _next_batch(self, documents: list[RawBSONDocument], batch_size: int) -> list[RawBSONDocument]:
        """Take the next batch off ``documents`` (at most ``batch_size`` when positive, and at most 16 MiB)."""
        limit = batch_size if batch_size > 0 else len(documents)
        taken, size = 0, 0
        while taken < min(limit, len(documents)):
            size += len(documents[taken].raw)
            if taken and size > MAX_BSON_SIZE:
                break
            taken += 1
        batch = documents[:taken]
        del documents[:taken]
        return batch

    def _cursor_reply(self, ns: str, documents: list[Any], batch_size: int | None,
                      single_batch: bool = False) -> dict[str, Any]:
        raw = [RawBSONDocument(bson.encode(doc)) for doc in documents]
        if batch_size == 0:  # explicitly none now: the cursor only opens
            batch = []
        else:
            batch = self._next_batch(raw, DEFAULT_FIRST_BATCH if batch_size is None else batch_size)
        cursor_id = 0
        if raw and not single_batch:
            cursor_id = next(self._cursor_ids)
            self._cursors[cursor_id] = _Cursor(ns, raw)
        return {"cursor": {"firstBatch": batch, "id": Int64(cursor_id), "ns": ns}}

    def _cmd_getMore(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        cursor_id = int(body["getMore"])
        cursor = self._cursors.get(cursor_id)
        if cursor is None or cursor.ns != f"{db.name}.{body.get('collection')}":
            raise CommandError(43, f"cursor id {cursor_id} not found")
        batch = self._next_batch(cursor.documents, int(body.get("batchSize") or 0))
        if not cursor.documents:
            del self._cursors[cursor_id]
            cursor_id = 0
        return {"cursor": {"nextBatch": batch, "id": Int64(cursor_id), "ns": cursor.ns}}

    def _cmd_killCursors(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        killed, missing = [], []
        for cursor_id in body.get("cursors", []):
            (killed if self._cursors.pop(int(cursor_id), None) is not None else missing).append(cursor_id)
        return {"cursorsKilled": killed, "cursorsNotFound": missing, "cursorsAlive": [], "cursorsUnknown": []}

    # -- reads ------------------------------------------------------------------------------------------------------
    def _cmd_find(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        name = body["find"]
        limit = int(body.get("limit") or 0)
        single_batch = bool(body.get("singleBatch")) or limit < 0
        documents = list(db[name].find(body.get("filter") or {}, body.get("projection") or None,
                                       skip=int(body.get("skip") or 0), limit=abs(limit),
                                       sort=_sort_list(body.get("sort"))))
        batch_size = body.get("batchSize")
        return self._cursor_reply(f"{db.name}.{name}", documents, None if batch_size is None else int(batch_size),
                                  single_batch)

    def _cmd_aggregate(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        name = body["aggregate"]
        if not isinstance(name, str):
            raise CommandError(115, "database-level aggregation is not supported by the test server")
        documents = list(db[name].aggregate(body.get("pipeline", [])))
        batch_size = (body.get("cursor") or {}).get("batchSize")
        return self._cursor_reply(f"{db.name}.{name}", documents, None if batch_size is None else int(batch_size))

    def _cmd_count(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        found = db[body["count"]].find(body.get("query") or {}, {"_id": 1}, skip=int(body.get("skip") or 0),
                                       limit=abs(int(body.get("limit") or 0)))
        return {"n": len(list(found))}

    def _cmd_distinct(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        return {"values": db[body["distinct"]].distinct(body["key"], body.get("query") or None)}

    # -- writes -----------------------------------------------------------------------------------------------------
    def _check(self, db: Any, collection: str, kind: str, item: dict[str, Any]) -> None:
        if self.write_check is not None:
            refusal = self.write_check(db.name, collection, kind, item)
            if refusal is not None:
                raise _StatementError(refusal["code"], refusal["errmsg"])

    def _cmd_insert(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        name, documents = body["insert"], body.get("documents", [])
        retry_key = None
        if "lsid" in body and "txnNumber" in body:
            retry_key = (bytes(body["lsid"]["id"]), int(body["txnNumber"]))
        stored = self._stored_statements.setdefault(retry_key, set()) if retry_key else set()
        n, errors = 0, []
        for index, doc in enumerate(documents):
            if index in stored:  # a retried statement that was stored before: done already
                n += 1
                continue
            try:
                self._check(db, name, "insert", doc)
                size = bson_size(doc)
                if size > MAX_BSON_SIZE:
                    raise _StatementError(2, f"object to insert too large. size in bytes: {size}, "
                                             f"max size: {MAX_BSON_SIZE}")
                db[name].insert_one(doc)
            except Exception as exc:  # noqa: BLE001 - becomes the statement's writeError
                errors.append(self._write_error(index, exc))
                if body.get("ordered", True):
                    break
                continue
            stored.add(index)
            n += 1
        self._forget_old_statements()
        return self._write_reply(n, errors)

    def _forget_old_statements(self, keep: int = 10_000) -> None:
        while len(self._stored_statements) > keep:
            del self._stored_statements[next(iter(self._stored_statements))]

    def _cmd_update(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        name = body["update"]
        n = modified = 0
        upserted, errors = [], []
        for index, statement in enumerate(body.get("updates", [])):
            try:
                self._check(db, name, "update", statement)
                matched, changed, upserted_id = self._update(db[name], statement)
            except Exception as exc:  # noqa: BLE001 - becomes the statement's writeError
                errors.append(self._write_error(index, exc))
                if body.get("ordered", True):
                    break
                continue
            n += matched + (upserted_id is not None)
            modified += changed
            if upserted_id is not None:
                upserted.append({"index": index, "_id": upserted_id})
        reply = self._write_reply(n, errors)
        reply["nModified"] = modified
        if upserted:
            reply["upserted"] = upserted
        return reply

    def _update(self, coll: Any, statement: dict[str, Any]) -> tuple[int, int, Any]:
        """Apply one update statement; undo it (and raise) where a resulting document passes 16 MiB."""
        query, update = statement.get("q") or {}, statement["u"]
        multi, upsert = bool(statement.get("multi")), bool(statement.get("upsert"))
        before = list(coll.find(query)) if multi else [doc for doc in [coll.find_one(query)] if doc is not None]
        options: dict[str, Any] = {"upsert": upsert}
        if isinstance(update, dict) and update and not next(iter(update)).startswith("$"):
            result = coll.replace_one(query, update, **options)
        else:
            if statement.get("arrayFilters"):
                options["array_filters"] = statement["arrayFilters"]
            result = (coll.update_many if multi else coll.update_one)(query, update, **options)
        self._undo_if_too_large(coll, before, result.upserted_id)
        return result.matched_count, result.modified_count, result.upserted_id

    def _undo_if_too_large(self, coll: Any, before: list[dict[str, Any]], upserted_id: Any) -> None:
        error = None
        for old in before:
            new = coll.find_one({"_id": old["_id"]})
            if new is not None and bson_size(new) > MAX_BSON_SIZE:
                coll.replace_one({"_id": old["_id"]}, old)
                error = _StatementError(17419, f"Resulting document after update is larger than {MAX_BSON_SIZE}")
        if upserted_id is not None:
            new = coll.find_one({"_id": upserted_id})
            if new is not None and bson_size(new) > MAX_BSON_SIZE:
                coll.delete_one({"_id": upserted_id})
                error = _StatementError(17420, f"Document to upsert is larger than {MAX_BSON_SIZE}")
        if error is not None:
            raise error

    def _cmd_delete(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        coll, n, errors = db[body["delete"]], 0, []
        for index, statement in enumerate(body.get("deletes", [])):
            try:
                remove = coll.delete_many if int(statement.get("limit", 0)) == 0 else coll.delete_one
                n += remove(statement.get("q") or {}).deleted_count
            except Exception as exc:  # noqa: BLE001 - becomes the statement's writeError
                errors.append(self._write_error(index, exc))
                if body.get("ordered", True):
                    break
        return self._write_reply(n, errors)

    def _cmd_findAndModify(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        name = body["findAndModify"]
        coll = db[name]
        query, fields = body.get("query") or {}, body.get("fields") or None
        sort = _sort_list(body.get("sort"))
        if body.get("remove"):
            value = coll.find_one_and_delete(query, projection=fields, sort=sort)
            return {"lastErrorObject": {"n": int(value is not None)}, "value": value}
        update, upsert = body.get("update") or {}, bool(body.get("upsert"))
        try:
            self._check(db, name, "update", {"q": query, "u": update, "upsert": upsert, "multi": False})
        except _StatementError as exc:
            raise CommandError(exc.code, exc.errmsg) from exc
        before = coll.find_one(query, sort=sort)
        old_value = coll.find_one({"_id": before["_id"]}, fields) if before is not None and fields else before
        options: dict[str, Any] = {"sort": sort, "upsert": upsert, "return_document": ReturnDocument.AFTER}
        if isinstance(update, dict) and update and not next(iter(update)).startswith("$"):
            after = coll.find_one_and_replace(query, update, **options)
        else:
            if body.get("arrayFilters"):
                options["array_filters"] = body["arrayFilters"]
            after = coll.find_one_and_update(query, update, **options)
        upserted_id = after["_id"] if before is None and after is not None else None
        try:
            self._undo_if_too_large(coll, [before] if before is not None else [], upserted_id)
        except _StatementError as exc:
            raise CommandError(exc.code, exc.errmsg) from exc
        last_error: dict[str, Any] = {"n": int(after is not None), "updatedExisting": before is not None}
        if upserted_id is not None:
            last_error["upserted"] = upserted_id
        if body.get("new"):
            value = coll.find_one({"_id": after["_id"]}, fields) if after is not None else None
        else:
            value = old_value
        return {"lastErrorObject": last_error, "value": value}

    @staticmethod
    def _write_error(index: int, exc: Exception) -> dict[str, Any]:
        code, errmsg = _error_from_exception(exc)
        return {"index": index, "code": code, "errmsg": errmsg}

    @staticmethod
    def _write_reply(n: int, errors: list[dict[str, Any]]) -> dict[str, Any]:
        reply: dict[str, Any] = {"n": n}
        if errors:
            reply["writeErrors"] = errors
        return reply

    # -- collections, indexes, databases ----------------------------------------------------------------------------
    def _collection_info(self, db: Any, name: str) -> dict[str, Any]:
        options = self._options.get((db.name, name), {})
        info: dict[str, Any] = {"name": name, "type": "timeseries" if "timeseries" in options else "collection",
                                "options": options, "info": {"readOnly": False}}
        if info["type"] == "collection":
            info["idIndex"] = {"v": 2, "key": {"_id": 1}, "name": "_id_"}
        return info

    def _cmd_listCollections(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        found = [self._collection_info(db, name) for name in sorted(db.list_collection_names())]
        wanted = body.get("filter") or {}
        found = [info for info in found if filtering.filter_applies(wanted, info)]
        if body.get("nameOnly"):
            found = [{"name": info["name"], "type": info["type"]} for info in found]
        batch_size = (body.get("cursor") or {}).get("batchSize")
        return self._cursor_reply(f"{db.name}.$cmd.listCollections", found,
                                  None if batch_size is None else int(batch_size))

    def _cmd_create(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        name = body["create"]
        if name in db.list_collection_names():
            raise CommandError(48, f"Collection {db.name}.{name} already exists.")
        db.create_collection(name)
        self._options[(db.name, name)] = {k: v for k, v in body.items() if k != "create" and k not in GENERIC_FIELDS}
        return {}

    def _cmd_createIndexes(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        name = body["createIndexes"]
        created = name not in db.list_collection_names()
        coll = db[name]
        before = len(coll.index_information()) if not created else 1
        for spec in body.get("indexes", []):
            options = {k: v for k, v in spec.items() if k not in ("key", "v", "ns", "background")}
            coll.create_index(list(spec["key"].items()), **options)
        return {"createdCollectionAutomatically": created, "numIndexesBefore": before,
                "numIndexesAfter": len(coll.index_information())}

    def _cmd_listIndexes(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        name = body["listIndexes"]
        if name not in db.list_collection_names():
            raise CommandError(26, f"ns does not exist: {db.name}.{name}")
        indexes = []
        for index_name, info in db[name].index_information().items():
            spec = {"v": 2, "key": dict(info["key"]), "name": index_name}
            spec.update((k, v) for k, v in info.items() if k not in ("key", "v"))
            indexes.append(spec)
        batch_size = (body.get("cursor") or {}).get("batchSize")
        return self._cursor_reply(f"{db.name}.{name}", indexes, None if batch_size is None else int(batch_size))

    def _cmd_drop(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        name = body["drop"]
        if name not in db.list_collection_names():
            raise CommandError(26, "ns not found")
        indexes = len(db[name].index_information())
        db.drop_collection(name)
        self._options.pop((db.name, name), None)
        return {"nIndexesWas": indexes, "ns": f"{db.name}.{name}"}

    def _cmd_dropDatabase(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        self.client.drop_database(db.name)
        for key in [key for key in self._options if key[0] == db.name]:
            del self._options[key]
        return {"dropped": db.name}

    def _cmd_listDatabases(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        names = self.client.list_database_names()
        return {"databases": [{"name": name, "sizeOnDisk": 0, "empty": False} for name in names], "totalSize": 0}

    # -- server -----------------------------------------------------------------------------------------------------
    def _cmd_ping(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        return {}

    def _cmd_endSessions(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        return {}

    def _cmd_buildInfo(self, db: Any, body: dict[str, Any]) -> dict[str, Any]:
        return {"version": "6.0.0", "versionArray": [6, 0, 0, 0], "gitVersion": "wire-server",
                "bits": 64, "debug": False, "maxBsonObjectSize": MAX_BSON_SIZE, "storageEngines": ["mongomock"]}
