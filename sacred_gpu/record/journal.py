"""The write-ahead journal: every record is on local disk before it is queued for MongoDB.

One folder per run under the spool directory, private to the user (folders 0700, files 0600)::

    <spool>/<key>/state.json       what the run is: database, collection prefix, run id once known, finished?
    <spool>/<key>/000001.log ...   records, framed and checksummed, in segments of at most SEGMENT_BYTES
    <spool>/<key>/acked            "<segment> <offset>": everything before it is acknowledged by MongoDB
    <spool>/<key>/lock             held (``flock``) by the process that records or syncs the run
    <spool>/<key>/files/           copies of artifacts, resources and sources waiting to be uploaded

A record is a checksummed frame (:mod:`.journal_frames`), appended with unbuffered writes; a write that fails or
lands only in part (a full disk, a short write) is rolled back by truncating the segment to its last good length
before anything else is appended, so no record ever lands behind a torn one. Each process starts a segment of its
own, so it never appends behind bytes another process may have left torn.

Two records are the journal's own, never written to MongoDB (:data:`MARKS`): a process that fills a segment ends it
with a ``seal`` record before starting the next, and a run's recorder ends the journal with an ``end`` record. A
reader of a copy that arrives in pieces (a followed folder, :mod:`sacred_gpu.record.follow`) can then tell a whole
segment from one still on its way.

Segments wholly acknowledged are deleted as MongoDB acknowledges them; a journal folder is removed only once every
record in it is acknowledged and every damaged region has been copied to the quarantine (see
:mod:`sacred_gpu.record.quarantine`). Journals written by sacred-gpu 0.1 (``NNNNNN.bson``: BSON documents back to back,
no checksums) are still read; there, a damaged record makes the rest of its segment one damaged region.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sacred_gpu.record import journal_frames as frames
from sacred_gpu.record.journal_files import SpooledFiles
from sacred_gpu.record.journal_frames import Damage, Entry, Position
from sacred_gpu.record.spool import FILE_MODE, FOLDER_MODE, QUARANTINE, make_private_folder, write_all, write_atomically

logger = logging.getLogger(__name__)

#: Bytes per journal segment before a new one is started.
SEGMENT_BYTES = 16 * 1024 * 1024

#: Environment variable naming the spool directory.
SPOOL_ENV = "SACRED_GPU_SPOOL"

#: The journal's own records (``op``): ``seal`` ends a full segment (the next one follows), ``end`` the run's journal.
SEAL, END = "seal", "end"
MARKS = frozenset({SEAL, END})


class Journal(SpooledFiles):
    """The journal of one run. Appends come from any thread; one reader (the writer thread) reads and acknowledges.
    Copies of files waiting for upload are kept in its ``files`` folder (:class:`.journal_files.SpooledFiles`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.files = self.folder / "files"
        self.books = self.folder  # where the lock and how far MongoDB acknowledged are kept
        self._lock = threading.Lock()  # appends, and the bounds a reader in this process may read up to
        self._state_lock = threading.Lock()
        self._fd: int | None = None  # the segment this process appends to, opened on the first append
        self._segment = 0
        self._size = 0  # bytes of whole records in that segment
        self._lock_file: IO[bytes] | None = None

    @classmethod
    def create(cls, spool: Path, state: dict[str, Any]) -> Journal:
        """A new journal folder in ``spool`` with its initial state."""
        folder = make_private_folder(Path(spool)) / f"run-{uuid.uuid4().hex[:12]}"
        folder.mkdir(mode=FOLDER_MODE)
        (folder / "files").mkdir(mode=FOLDER_MODE)
        journal = cls(folder)
        journal.write_state(state)
        return journal

    # -- state ----------------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        path = self.folder / "state.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def write_state(self, state: dict[str, Any]) -> None:
        write_atomically(self.folder / "state.json", json.dumps(state, indent=1, sort_keys=True))

    def update_state(self, **changes: Any) -> dict[str, Any]:
        with self._state_lock:
            state = self.state()
            state.update(changes)
            self.write_state(state)
            return state

    # -- the lock: one process records or syncs a journal at a time -----------------------------------------------
    def try_lock(self) -> bool:
        """Take the journal's lock without waiting; False when another process (or journal object) holds it.

        The lock is the operating system's (``flock``): it is released when its holder exits, however it exits.
        """
        if self._lock_file is not None:
            return True
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no locking
            return True
        fd = os.open(self.books / "lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
        handle = os.fdopen(fd, "r+b")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock_file = handle
        return True

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- writing --------------------------------------------------------------------------------------------------
    def append(self, rec: dict[str, Any]) -> None:
        """Journal one record. Raises ``bson.errors.InvalidDocument`` if it cannot be encoded and ``OSError`` if the
        disk refuses it (the journal is then as it was before the call)."""
        self.append_frame(frames.frame(rec))

    def append_frame(self, data: bytes) -> None:
        """Journal one record made by :func:`frame`; on ``OSError`` nothing of it stays in the journal."""
        with self._lock:
            if self._fd is None or (self._size and self._size + len(data) > SEGMENT_BYTES):
                self._open_segment()
            assert self._fd is not None
            try:
                write_all(self._fd, data)
            except OSError:
                self._roll_back()
                raise
            self._size += len(data)

    def _open_segment(self) -> None:
        """Start a new segment after every existing one (never append behind another process's bytes); a full
        segment is sealed first."""
        if self._fd is not None:
            self._seal()
            os.close(self._fd)
            self._fd = None
        segments = self.segments()
        self._segment = max([self._segment, *segments]) + 1
        self._fd = os.open(self._segment_path(self._segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        self._size = 0

    def _seal(self) -> None:
        """End the full segment with a ``seal`` record; a seal the disk refuses is rolled back (a reader of a copy
        in pieces then waits for the run's ``end`` before it reads on)."""
        try:
            write_all(self._fd, frames.frame({"op": SEAL}))  # type: ignore[arg-type]
        except OSError:
            self._roll_back()

    def mark_end(self) -> None:
        """End the run's journal with an ``end`` record (nothing is appended after it). Raises ``OSError``."""
        self.append({"op": END})

    def _roll_back(self) -> None:
        """Cut what a failed write left of its record; if even that fails, the next append starts a new segment."""
        try:
            os.ftruncate(self._fd, self._size)  # type: ignore[arg-type]
        except OSError:
            logger.warning("sacred-gpu: could not roll back a failed write in %s; continuing in a new segment",
                           self._segment_path(self._segment))
            os.close(self._fd)  # type: ignore[arg-type]
            self._fd = None

    def sync(self) -> None:
        """Force journaled records to the disk itself (survives power loss, not just a killed process)."""
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)

    @property
    def quarantine_folder(self) -> Path:
        """Where this journal's quarantine is kept (:mod:`sacred_gpu.record.quarantine`)."""
        return self.books.parent / QUARANTINE / self.folder.name

    # -- reading --------------------------------------------------------------------------------------------------
    def segments(self) -> list[int]:
        names = (p.name for p in self.folder.iterdir() if p.suffix in (frames.SUFFIX, frames.LEGACY_SUFFIX))
        return sorted({int(name.split(".")[0]) for name in names if name.split(".")[0].isdigit()})

    def _segment_path(self, segment: int) -> Path:
        path = self.folder / f"{segment:06d}{frames.SUFFIX}"
        legacy = path.with_suffix(frames.LEGACY_SUFFIX)
        return legacy if not path.exists() and legacy.exists() else path

    def acked(self) -> Position:
        path = self.books / "acked"
        if not path.exists():
            segments = self.segments()
            return (segments[0] if segments else 1, 0)
        segment, offset = path.read_text().split()
        return int(segment), int(offset)

    def read(self, start: Position, max_records: int = 10_000, *,
             tail_is_damage: bool = False) -> Iterator[tuple[Entry, Position]]:
        """Records (dicts) and damaged regions (:class:`Damage`) from ``start`` on, each with the position after it
        (the journal's own :data:`MARKS` are passed over).

        ``max_records`` bounds the records yielded. An incomplete frame at the very end of the last segment is a
        record still being written unless ``tail_is_damage`` (the process that wrote it is gone); a reader in the
        appending process never reads past what was wholly appended.
        """
        with self._lock:
            own = (self._segment, self._size) if self._fd is not None else None
        segments = [s for s in self.segments() if s >= start[0]]
        written = tuple(self.state().get("end") or ()) if tail_is_damage else ()  # where its run's appends ended
        count, position = 0, start
        for index, segment in enumerate(segments):
            last = index == len(segments) - 1
            offset = start[1] if segment == start[0] else 0
            limit = own[1] if own is not None and own[0] == segment else None
            for entry, end in frames.read_segment(self._segment_path(segment), segment, offset, limit,
                                            tail_is_damage or not last):
                position = (segment, end)
                if not isinstance(entry, Damage) and entry.get("op") in MARKS:
                    continue  # the journal's own (see the module's docstring)
                if isinstance(entry, Damage):
                    if last and written and position < written and end == entry.end == _size(self, segment):
                        # a torn tail of a journal cut short: the cut is part of the damage
                        entry = Damage(entry.segment, entry.start, entry.end,
                                       f"{entry.reason}; {frames.cut_message(position, written)}", entry.data)
                        position = written
                else:
                    count += 1
                yield entry, position
                if count >= max_records:
                    return
        if written and position < written:  # whole records missing at the end: the journal was cut there
            yield Damage(position[0], position[1], position[1], frames.cut_message(position, written), b""), written

    def ack(self, position: Position) -> None:
        """Everything before ``position`` is in MongoDB (or quarantined): remember it and delete wholly acknowledged
        segments (where they are :attr:`owned`)."""
        write_atomically(self.books / "acked", f"{position[0]} {position[1]}")
        if not self.owned:
            return
        with self._lock:
            current = self._segment if self._fd is not None else None
        for segment in self.segments():
            if segment < position[0] and segment != current:
                self._segment_path(segment).unlink(missing_ok=True)

    def _segment_stats(self) -> Iterator[tuple[int, os.stat_result]]:
        """Each segment's number and ``stat`` (a segment trimmed meanwhile is left out)."""
        for number in self.segments():
            try:
                yield number, self._segment_path(number).stat()
            except FileNotFoundError:
                continue

    def backlog(self) -> int:
        """Bytes journaled and not acknowledged yet."""
        segment, offset = self.acked()
        return max(0, sum(stat.st_size for number, stat in self._segment_stats() if number >= segment) - offset)

    def last_write(self) -> float:
        """When a record was last appended (the newest segment's modification time, Unix time; 0 without one)."""
        return max((stat.st_mtime for _, stat in self._segment_stats()), default=0.0)

    def pending(self) -> bool:
        """Whether anything journaled (a record or a damaged region) is not acknowledged yet."""
        return next(iter(self.read(self.acked(), max_records=1)), None) is not None

    def end(self) -> Position | None:
        """Where this process's appends end (segment, offset), or None if it appended nothing."""
        with self._lock:
            return (self._segment, self._size) if self._segment else None

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def remove(self) -> None:
        """Delete the whole folder: the caller made sure everything in it was acknowledged or quarantined."""
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        self.unlock()


def _size(journal: Journal, segment: int) -> int:
    try:
        return journal._segment_path(segment).stat().st_size
    except FileNotFoundError:
        return -1
