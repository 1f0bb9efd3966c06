"""The only code that writes to MongoDB.

Every write sacred-gpu makes goes through :class:`MongoWriter`: run documents, metric series, system samples,
GridFS files, run-id counters and indexes. The observer describes writes as *records* (plain BSON documents, see
:func:`record`), which are journaled to disk and applied here by :meth:`MongoWriter.apply`. Records name no run id
(it is supplied when they are applied, so an offline run gets its id at sync time), and applying one twice is
harmless: ``$set`` of whole fields, metric appends guarded by a sequence number, samples and files checked
for on a retry.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, Callable

import pymongo
from bson import ObjectId
from pymongo.errors import CollectionInvalid, DuplicateKeyError, OperationFailure, WriteError

from sacred_gpu import connection, errors, schema
from sacred_gpu.connection import is_mongomock
from sacred_gpu.errors import RecordRefused
from sacred_gpu.record.writer_edits import ReaderEdits
from sacred_gpu.record.writer_files import FileWrites

logger = logging.getLogger(__name__)

#: MongoDB's error code for "a collection of this name exists".
NAMESPACE_EXISTS = 48
#: How many ids :meth:`MongoWriter.insert_run` tries before giving up (each clash means another writer won).
MAX_ID_ATTEMPTS = 100

#: Record operations and their fields (``op`` says which):
#: ``insert_run`` {doc}; ``update_run`` {fields}; ``metric`` {metric_id, name, seq, steps, values, timestamps,
#: full_points?}; ``chunk`` {chunk_id, metric_id, name, seq, steps, values, timestamps} (columns packed by
#: :func:`schema.pack_column`; stored with the fields of :func:`schema.chunk_summary`); ``samples``
#: {samples: [{t, values}]}; ``file`` {kind: source|resource|artifact|value, file_id, spooled (or original: the
#: file's own path, when it could not be copied into the journal), path, name, md5,
#: content_type, metadata} (``value``: a value moved out of the run document, ``name`` its dotted path).
OPS = ("insert_run", "update_run", "metric", "chunk", "samples", "file")


def record(op: str, **fields: Any) -> dict[str, Any]:
    """A record for the journal: ``{"op": op, **fields}``."""
    if op not in OPS:
        raise ValueError(f"unknown record op {op!r}")
    return {"op": op, **fields}


class RunIdTaken(Exception):
    """The run id a journal was given at sync time belongs to another run: allocate another."""


class MongoWriter(FileWrites, ReaderEdits):
    """Writes one database's runs, metrics and GridFS files, in Sacred's format.

    ``database``: a pymongo (or mongomock) ``Database``; ``collections``: the names for a collection prefix.
    """

    def __init__(self, database: Any, collections: schema.Collections | None = None) -> None:
        self.database = database
        self.collections = collections or schema.Collections()
        self.runs = database[self.collections.runs]
        self.metrics = database[self.collections.metrics]
        self.counters = database[self.collections.counters]
        self.samples = database[self.collections.samples]
        self.chunks = database[self.collections.chunks]
        self._indexed = False
        self._keys_rewritten = False  # the server refused '.' or '$' in field names (said once, at WARNING)

    @functools.cached_property
    def fs(self) -> Any:
        """The GridFS bucket Sacred uses."""
        import gridfs

        return gridfs.GridFS(self.database, collection=schema.GRIDFS_BUCKET)

    # -- setup ----------------------------------------------------------------------------------------------------
    def ensure_indexes(self) -> None:
        """Create the indexes our writes and the readers' queries need (idempotent; once per writer)."""
        if self._indexed:
            return
        self._create_samples_collection()
        for collection, keys in schema.INDEXES:
            getattr(self, collection).create_index(keys)
        files = self.database[f"{schema.GRIDFS_BUCKET}.files"]
        for keys in schema.GRIDFS_INDEXES:
            files.create_index(keys)
        self._indexed = True

    def _create_samples_collection(self) -> None:
        """Samples go to a time-series collection where the server has them (5.0+), else to a plain one."""
        name = self.collections.samples
        if is_mongomock(self.database) or name in self.database.list_collection_names(filter={"name": name}):
            return
        version = tuple(self.database.client.server_info().get("versionArray", (0,))[:2])
        try:
            if version >= (5, 0):
                self.database.create_collection(name, timeseries=schema.SAMPLES_TIMESERIES)
        except CollectionInvalid:  # another process created it meanwhile
            pass
        except OperationFailure as exc:
            if exc.code != NAMESPACE_EXISTS:  # created meanwhile, after pymongo checked that it was not there
                raise

    # -- run ids --------------------------------------------------------------------------------------------------
    def next_run_id(self) -> int:
        """Allocate the next integer run id from an atomic counter, above any id already in the runs collection.

        The counter is raised with ``$max`` to the highest existing id (runs written by Sacred's stock observer,
        which uses "max + 1"), then incremented with ``$inc`` in ``find_one_and_update``: both are single-document
        atomic operations on a MongoDB server, so concurrent processes never receive the same number.
        """
        key = {"_id": self.collections.runs}
        highest = self._highest_run_id()
        try:
            self.counters.update_one(key, {"$max": {"seq": highest}}, upsert=True)
        except DuplicateKeyError:  # two first-ever upserts raced; the document exists now
            self.counters.update_one(key, {"$max": {"seq": highest}})
        doc = self.counters.find_one_and_update(
            key, {"$inc": {"seq": 1}}, return_document=pymongo.ReturnDocument.AFTER
        )
        return int(doc["seq"])

    def _highest_run_id(self) -> int:
        newest = self.runs.find_one({"_id": {"$gte": 0}}, {"_id": 1}, sort=[("_id", pymongo.DESCENDING)])
        if newest is None or not isinstance(newest["_id"], (int, float)):
            return 0
        return int(newest["_id"])

    # -- run documents --------------------------------------------------------------------------------------------
    def insert_run(self, doc: dict[str, Any]) -> Any:
        """Insert a new run document; allocate its ``_id`` when it has none. Returns the id."""
        if doc.get("_id") is not None:
            self._insert_run_document(doc)
            return doc["_id"]
        for _ in range(MAX_ID_ATTEMPTS):
            doc["_id"] = self.next_run_id()
            try:
                self._insert_run_document(doc)
                return doc["_id"]
            except DuplicateKeyError:  # another writer took this id by "max + 1" (e.g. Sacred's own observer)
                logger.debug("run id %s taken, allocating another", doc["_id"])
        raise RuntimeError(f"could not allocate a run id after {MAX_ID_ATTEMPTS} attempts")

    def update_run(self, run_id: Any, fields: dict[str, Any]) -> None:
        """``$set`` the given top-level or dotted fields of a run; every other field is left as it is.

        Raises :class:`~sacred_gpu.errors.RecordRefused` when the run has no document (its insertion was refused).
        """
        for name in fields:
            if name.split(".")[0] in schema.FOREIGN_FIELDS:
                raise ValueError(f"sacred-gpu never writes {name!r}: other tools own it")
        try:
            matched = self.runs.update_one({"_id": run_id}, {"$set": fields}).matched_count
        except (WriteError, OperationFailure) as exc:
            if not errors.refused_field_names(exc):
                raise
            self._say_keys_rewritten(exc)
            rewritten = {name: schema.sacred_keys(value) for name, value in fields.items()}  # our paths kept
            matched = self.runs.update_one({"_id": run_id}, {"$set": rewritten}).matched_count
        if matched == 0:
            raise RecordRefused(f"run {run_id!r} has no document in {self.collections.runs}")

    def _insert_run_document(self, doc: dict[str, Any]) -> None:
        """Insert a run document as it is, or, where the server refuses its field names, as Sacred would store it."""
        try:
            self.runs.insert_one(doc)
        except (WriteError, OperationFailure) as exc:
            if not errors.refused_field_names(exc):  # a duplicate id included: the caller allocates another
                raise
            self._say_keys_rewritten(exc)
            self.runs.insert_one(schema.sacred_keys(doc))

    def _say_keys_rewritten(self, exc: BaseException) -> None:
        level = logging.DEBUG if self._keys_rewritten else logging.WARNING
        self._keys_rewritten = True
        logger.log(level, "sacred-gpu: MongoDB refused field names with '.' or a leading '$' (%s); they are stored "
                   "as Sacred stores them ('.' -> ',', leading '$' -> '@')", connection.short_error(exc))

    # -- metrics --------------------------------------------------------------------------------------------------
    def push_metric(
        self,
        metric_id: ObjectId,
        run_id: Any,
        name: str,
        steps: list[int],
        values: list[Any],
        timestamps: list[Any],
    ) -> None:
        """Append points to the metric document ``metric_id`` (created on first use), as Sacred does."""
        self.metrics.update_one(
            {"_id": metric_id},
            {
                "$setOnInsert": {"run_id": run_id, "name": name},
                "$push": {
                    "steps": {"$each": steps},
                    "values": {"$each": values},
                    "timestamps": {"$each": timestamps},
                },
            },
            upsert=True,
        )

    def insert_samples(self, run_id: Any, samples: list[tuple[Any, dict[str, float]]]) -> None:
        """Store system samples at full resolution, one document each, in one bulk write."""
        if samples:
            docs = [schema.sample_document(run_id, time, values) for time, values in samples]
            self.samples.insert_many(docs, ordered=False)

    # -- records --------------------------------------------------------------------------------------------------
    def apply(self, run_id: Any, rec: dict[str, Any], files: str | os.PathLike[str], remap: dict[ObjectId, ObjectId],
              retry: bool, progress: Callable[[int], None] | None = None) -> None:
        """Apply one journal record for run ``run_id``; ``retry``: it may have been applied (partly) before.

        ``files`` is the folder of spooled files; ``remap`` collects source files found already stored (their ids
        replace ours in the run document); ``progress`` is told the bytes of a file as they are read for upload.
        """
        op = rec["op"]
        if op == "update_run":
            self.update_run(run_id, rec["fields"])
        elif op == "metric":
            self.append_metric(run_id, rec)
        elif op == "chunk":
            self.insert_chunk(run_id, rec)
        elif op == "samples":
            self._insert_samples(run_id, rec["samples"], retry)
        elif op == "file":
            path = os.path.join(files, rec["spooled"]) if rec.get("spooled") else rec["original"]
            self._put_spooled(run_id, rec, path, remap, progress)
        elif op == "insert_run":
            self._insert_recorded_run(run_id, rec["doc"], remap)
        else:
            raise ValueError(f"unknown record op {op!r}")

    def append_metric(self, run_id: Any, rec: dict[str, Any]) -> None:
        """Sacred's ``$push`` of a ``metric`` record's points, applied once.

        Push where the document's ``seq`` is older than the record's; if nothing matched, create the document unless
        it exists. A record applied before matches neither, so applying it again changes nothing.
        """
        points = {"steps": rec["steps"], "values": rec["values"], "timestamps": rec["timestamps"]}
        marks = {"seq": rec["seq"], **({"full_points": rec["full_points"]} if "full_points" in rec else {})}
        appended = self.metrics.update_one(
            {"_id": rec["metric_id"], "seq": {"$lt": rec["seq"]}},
            {"$set": marks, "$push": {key: {"$each": value} for key, value in points.items()}},
        )
        if appended.matched_count == 0:
            self.metrics.update_one(
                {"_id": rec["metric_id"]},
                {"$setOnInsert": {"run_id": run_id, "name": rec["name"], **points, **marks,
                                  **({schema.ORIGIN: rec[schema.ORIGIN]} if schema.ORIGIN in rec else {})}},
                upsert=True,
            )

    def insert_chunk(self, run_id: Any, rec: dict[str, Any]) -> None:
        """Store a full-resolution chunk (``chunk`` record); a chunk stored before is left as it is."""
        doc = {"_id": rec["chunk_id"], "metric_id": rec["metric_id"], "run_id": run_id, "name": rec["name"],
               "seq": rec["seq"], "steps": rec["steps"], "values": rec["values"], "timestamps": rec["timestamps"]}
        columns = (schema.unpack_column(rec[key]) for key in ("steps", "values", "timestamps"))
        doc.update(schema.chunk_summary(*columns))  # bounds and preview
        try:
            self.chunks.insert_one(doc)
        except DuplicateKeyError:
            pass

    def _insert_samples(self, run_id: Any, samples: list[dict[str, Any]], retry: bool) -> None:
        times = [sample["t"] for sample in samples]
        if retry and times:  # a sample's time is unique within its run: skip those stored before
            stored = {doc[schema.SAMPLE_TIME] for doc in self.samples.find(
                {schema.SAMPLE_RUN: run_id, schema.SAMPLE_TIME: {"$gte": min(times), "$lte": max(times)}},
                {schema.SAMPLE_TIME: 1})}
            samples = [sample for sample in samples if sample["t"] not in stored]
        self.insert_samples(run_id, [(sample["t"], sample["values"]) for sample in samples])

    def _insert_recorded_run(self, run_id: Any, doc: dict[str, Any], remap: dict[ObjectId, ObjectId]) -> None:
        doc = dict(doc, _id=run_id)
        experiment = doc.get("experiment")
        if experiment and experiment.get("sources"):
            experiment = dict(experiment, sources=[[name, remap.get(fid, fid)] for name, fid in experiment["sources"]])
            doc["experiment"] = experiment
        try:
            self._insert_run_document(doc)
        except DuplicateKeyError:  # inserted by an earlier attempt, or the id is another run's
            stored = self.runs.find_one({"_id": run_id}, {"start_time": 1, "experiment.name": 1, "host.hostname": 1})

            def identity(run: dict[str, Any]) -> tuple:
                return run.get("start_time"), run.get("experiment", {}).get("name"), run.get("host", {}).get("hostname")

            if stored is None or identity(stored) != identity(doc):
                raise RunIdTaken(f"run id {run_id} belongs to another run") from None
