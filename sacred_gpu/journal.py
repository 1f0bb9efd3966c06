"""The write-ahead journal: every record is on local disk before it is queued for MongoDB.

One folder per run under the spool directory::

    <spool>/<key>/state.json       what the run is: database, collection prefix, run id once known, finished?
    <spool>/<key>/000001.bson ...  records, BSON documents back to back, in segments of at most SEGMENT_BYTES
    <spool>/<key>/acked            "<segment> <offset>": everything before it is acknowledged by MongoDB
    <spool>/<key>/files/           copies of artifacts, resources and sources waiting to be uploaded

A record is appended with one ``write`` and flushed to the operating system, so a process killed with SIGKILL loses
nothing it journaled; a torn record at the end of the last segment (power loss mid-write) is ignored on reading.
Segments wholly acknowledged are deleted (the journal is trimmed); a finished run whose records are all
acknowledged has its folder removed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bson

logger = logging.getLogger(__name__)

#: Environment variable naming the spool directory.
SPOOL_ENV = "SACRED_GPU_SPOOL"
#: Bytes per journal segment before a new one is started.
SEGMENT_BYTES = 16 * 1024 * 1024

Position = tuple[int, int]  # (segment number, byte offset in it)


def default_spool() -> Path:
    """``$SACRED_GPU_SPOOL``, else the user's data directory (``$XDG_DATA_HOME/sacred-gpu/spool``)."""
    if os.environ.get(SPOOL_ENV):
        return Path(os.environ[SPOOL_ENV]).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data_home) / "sacred-gpu" / "spool"


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class Journal:
    """The journal of one run. Appends come from any thread; one reader (the writer thread) reads and acknowledges."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.files = self.folder / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        segments = self.segments()
        self._segment = segments[-1] if segments else 1
        self._handle = open(self._segment_path(self._segment), "ab")

    @classmethod
    def create(cls, spool: Path, state: dict[str, Any]) -> Journal:
        """A new journal folder in ``spool`` with its initial state."""
        folder = Path(spool) / f"run-{uuid.uuid4().hex[:12]}"
        folder.mkdir(parents=True)
        journal = cls(folder)
        journal.write_state(state)
        return journal

    # -- state ----------------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        path = self.folder / "state.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def write_state(self, state: dict[str, Any]) -> None:
        _write_atomically(self.folder / "state.json", json.dumps(state, indent=1, sort_keys=True))

    def update_state(self, **changes: Any) -> dict[str, Any]:
        state = self.state()
        state.update(changes)
        self.write_state(state)
        return state

    # -- writing --------------------------------------------------------------------------------------------------
    def append(self, record: dict[str, Any]) -> None:
        """Journal one record (BSON-encodable). Raises ``OSError`` if the disk refuses it."""
        data = bson.encode(record)
        with self._lock:
            if self._handle.tell() + len(data) > SEGMENT_BYTES and self._handle.tell() > 0:
                self._handle.close()
                self._segment += 1
                self._handle = open(self._segment_path(self._segment), "ab")
            self._handle.write(data)
            self._handle.flush()

    def sync(self) -> None:
        """Force journaled records to the disk itself (survives power loss, not just a killed process)."""
        with self._lock:
            if not self._handle.closed:
                self._handle.flush()
                os.fsync(self._handle.fileno())

    def spool_file(self, source: str | os.PathLike[str]) -> str:
        """Copy a file into the journal (it may be gone when the upload happens); returns the copy's name."""
        name = f"{uuid.uuid4().hex}{Path(source).suffix}"
        shutil.copyfile(source, self.files / name)
        return name

    def spool_text(self, text: str, suffix: str = ".txt") -> str:
        """Keep a text for upload as a file; returns its spooled name."""
        name = f"{uuid.uuid4().hex}{suffix}"
        (self.files / name).write_text(text, encoding="utf-8")
        return name

    # -- reading --------------------------------------------------------------------------------------------------
    def segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.folder.glob("[0-9]*.bson"))

    def _segment_path(self, segment: int) -> Path:
        return self.folder / f"{segment:06d}.bson"

    def acked(self) -> Position:
        path = self.folder / "acked"
        if not path.exists():
            segments = self.segments()
            return (segments[0] if segments else 1, 0)
        segment, offset = path.read_text().split()
        return int(segment), int(offset)

    def read(self, start: Position, max_records: int = 10_000) -> Iterator[tuple[dict[str, Any], Position]]:
        """Records from ``start`` on, each with the position just after it; stops at a torn or missing tail."""
        with self._lock:
            if not self._handle.closed:
                self._handle.flush()
        count = 0
        for segment in (s for s in self.segments() if s >= start[0]):
            offset = start[1] if segment == start[0] else 0
            with open(self._segment_path(segment), "rb") as handle:
                handle.seek(offset)
                while count < max_records:
                    header = handle.read(4)
                    if len(header) < 4:
                        break
                    (length,) = struct.unpack("<i", header)
                    body = handle.read(length - 4)
                    if length < 5 or len(body) < length - 4:
                        return  # a torn write at the end (or a record being appended right now)
                    try:
                        record = bson.decode(header + body)
                    except bson.errors.InvalidBSON:
                        logger.warning("sacred-gpu: journal %s has a damaged record at %d; stopping there",
                                       self._segment_path(segment), offset)
                        return
                    offset += length
                    count += 1
                    yield record, (segment, offset)
            if count >= max_records:
                return

    def ack(self, position: Position) -> None:
        """Everything before ``position`` is in MongoDB: remember it and delete wholly acknowledged segments."""
        _write_atomically(self.folder / "acked", f"{position[0]} {position[1]}")
        with self._lock:
            current = self._segment
        for segment in self.segments():
            if segment < position[0] and segment != current:
                self._segment_path(segment).unlink(missing_ok=True)

    def pending(self) -> bool:
        """Whether any journaled record is not acknowledged yet."""
        return next(iter(self.read(self.acked(), max_records=1)), None) is not None

    def close(self) -> None:
        with self._lock:
            if not self._handle.closed:
                self._handle.flush()
                self._handle.close()

    def remove(self) -> None:
        """Delete the whole folder (everything was acknowledged)."""
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def journals(spool: Path) -> list[Journal]:
    """Every run journal in a spool directory, oldest first."""
    spool = Path(spool)
    if not spool.is_dir():
        return []
    folders = sorted((p for p in spool.iterdir() if p.is_dir() and (p / "state.json").exists()),
                     key=lambda p: p.stat().st_mtime)
    return [Journal(folder) for folder in folders]
