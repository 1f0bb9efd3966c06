"""The writer's GridFS writes: spooled files uploaded under the ids their records name (once, even when retried),
sources and resources stored once per (path, md5), with one upload of each at a time in this process."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from bson import ObjectId

from sacred_gpu import schema


class _Counted:
    """A file read through, each read's size told to ``progress``."""

    def __init__(self, handle: Any, progress: Callable[[int], None]) -> None:
        self._handle, self._progress = handle, progress

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._progress(len(data))
        return data


class FileWrites:
    """Part of :class:`~sacred_gpu.record.writer.MongoWriter`, which sets the database and the bucket."""

    database: Any
    collections: schema.Collections
    fs: Any

    def _put_spooled(self, run_id: Any, rec: dict[str, Any], path: str, remap: dict[ObjectId, ObjectId],
                     progress: Callable[[int], None] | None = None) -> None:
        if rec["kind"] in ("source", "resource"):  # stored once per (path, md5), by whichever run comes first
            with _one_upload(rec["path"], rec["md5"]):
                existing = self.database[f"{schema.GRIDFS_BUCKET}.files"].find_one(
                    {"filename": rec["path"], "md5": rec["md5"]}, {"_id": 1})
                if existing is not None:
                    remap[rec["file_id"]] = existing["_id"]
                    return
                self._upload_once(rec, rec["path"], path, progress)
            return
        if rec["kind"] == "value":  # a value moved out of the run document (see schema.stub_large_values)
            filename = schema.stub_filename(self.collections.runs, run_id, rec["name"])
        else:
            filename = schema.artifact_filename(self.collections.runs, run_id, rec["name"])
        self._upload_once(rec, filename, path, progress)

    def _upload_once(self, rec: dict[str, Any], filename: str, path: str,
                     progress: Callable[[int], None] | None) -> None:
        """Upload a ``file`` record's file under its id, unless stored before (a retry after a broken upload first
        removes the chunks it left)."""
        if self.database[f"{schema.GRIDFS_BUCKET}.files"].find_one({"_id": rec["file_id"]}, {"_id": 1}):
            return
        self.database[f"{schema.GRIDFS_BUCKET}.chunks"].delete_many({"files_id": rec["file_id"]})
        self.put_file(path, filename, file_id=rec["file_id"], content_type=rec.get("content_type"),
                      metadata=rec.get("metadata"), md5=rec.get("md5"), progress=progress)

    def put_file(
        self,
        path: str | os.PathLike[str],
        filename: str,
        *,
        file_id: ObjectId | None = None,
        content_type: str | None = None,
        metadata: Any = None,
        md5: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ObjectId:
        """Store a local file in GridFS under ``filename``; returns its id. ``md5`` is kept for deduplication;
        ``progress`` is told the bytes read as they are sent."""
        fields = {"_id": file_id, "content_type": content_type, "metadata": metadata, "md5": md5}
        with open(path, "rb") as handle:
            source = handle if progress is None else _Counted(handle, progress)
            return self.fs.put(source, filename=filename, **{k: v for k, v in fields.items() if v is not None})

    def put_deduplicated(self, path: str | os.PathLike[str], md5: str) -> ObjectId:
        """Store a source or resource file once per (absolute path, md5); later runs reuse the stored copy.

        The ``md5`` field is the one Sacred's observer looks up, so Sacred reuses our copies and we reuse its.
        """
        filename = os.path.abspath(path)
        with _one_upload(filename, md5):
            existing = self.database[f"{schema.GRIDFS_BUCKET}.files"].find_one(
                {"filename": filename, "md5": md5}, {"_id": 1}
            )
            if existing is not None:
                return existing["_id"]
            return self.put_file(filename, filename, md5=md5)


#: Seconds an upload of a source or resource waits for the same file's upload in flight in this process.
IN_FLIGHT_WAIT = 60.0
_in_flight: dict[tuple[str, str], threading.Event] = {}
_in_flight_lock = threading.Lock()


@contextlib.contextmanager
def _one_upload(filename: str, md5: str) -> Iterator[None]:
    """One upload of a given (filename, md5) at a time in this process: a second run's upload of the same source
    or resource waits for the first (at most :data:`IN_FLIGHT_WAIT` seconds), then finds its copy stored; GridFS
    lists a file only once all of its chunks are in, so without this both would upload."""
    key, deadline = (filename, md5), time.monotonic() + IN_FLIGHT_WAIT
    mine: threading.Event | None = None
    while mine is None:
        with _in_flight_lock:
            other = _in_flight.get(key)
            if other is None:
                mine = _in_flight[key] = threading.Event()
                break
        if not other.wait(max(0.0, deadline - time.monotonic())):
            break  # the other upload is stuck: upload without waiting longer
    try:
        yield
    finally:
        if mine is not None:
            with _in_flight_lock:
                _in_flight.pop(key, None)
            mine.set()
