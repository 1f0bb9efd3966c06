"""The path of every record from the observer to MongoDB: journal first, then a background thread that writes.

:meth:`Recorder.submit` appends to the journal and returns: nothing on the caller's thread waits for MongoDB.
The writer thread reads what is not acknowledged yet from the journal (so memory stays bounded whatever the outage
length), applies it in order through :class:`~sacred_gpu.record.writer.MongoWriter`, and acknowledges it. While MongoDB
is unreachable, records wait on disk and the thread retries with backoff; :class:`Replayer` does that work, for the
writer thread and for ``sacred-gpu sync`` (:mod:`.replayer`).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from sacred_gpu.connection import short_error
from sacred_gpu.record.journal import Journal
from sacred_gpu.record.journal_frames import frame
from sacred_gpu.record.quarantine import Quarantine
from sacred_gpu.record.replayer import BACKOFF, MAX_BACKOFF, Replayer
from sacred_gpu.record.spool import private_fallback
from sacred_gpu.record.uploads import Uploader
from sacred_gpu.record.writer import MongoWriter

logger = logging.getLogger(__name__)

#: Environment variable that makes every run offline (journal only) when set to 1, true or yes.
OFFLINE_ENV = "SACRED_GPU_OFFLINE"
#: Seconds the end of a run waits for MongoDB to take the last records before leaving them to ``sacred-gpu sync``.
DEFAULT_FLUSH_TIMEOUT = 10.0

#: Bytes of records held in memory while the journal cannot be written (a full disk) before new ones are dropped.
MAX_HELD_BYTES = 256 * 1024 * 1024

#: Seconds between the progress lines of uploads the end of a run waits for.
PROGRESS_EVERY = 5.0


def offline_from_environment() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def open_journal(spool: Path, state: dict[str, Any]) -> Journal:
    """A new journal, locked by this process, in ``spool``, else in :func:`private_fallback`; raises ``OSError``
    naming both places when neither can be written."""
    try:
        journal = Journal.create(Path(spool), state)
    except OSError as exc:
        first = exc
        try:
            fallback = private_fallback()
            journal = Journal.create(fallback, state)
        except OSError as second:
            raise OSError(f"cannot journal in {spool} ({first}) nor in the temp dir ({second})") from second
        logger.warning("sacred-gpu: cannot journal in %s (%s); using %s", spool, first, fallback)
    journal.try_lock()
    return journal


def start_recorder(journal: Journal, writer: MongoWriter | None, run_id: Any, *, reason: str = "") -> Recorder:
    """The recorder of a new run: online (``writer`` given, ``run_id`` allocated) or offline (``writer`` None).

    An offline run gets a provisional id (``offline-<journal>``, or the id Sacred was given) until it is synced;
    a WARNING says why it is offline and where it is journaled.
    """
    offline = writer is None
    journal.update_state(run_id=run_id, offline=offline)
    recorder = Recorder(journal, writer, run_id)
    if offline:
        recorder.run_id = run_id if run_id is not None else f"offline-{journal.folder.name.removeprefix('run-')}"
        logger.warning("sacred-gpu: the run goes on OFFLINE (%s); it is journaled in %s; upload it later with "
                       "`sacred-gpu sync %s`", reason, journal.folder, journal.folder.parent)
    recorder.start()
    return recorder


def initial_state(target: dict[str, Any]) -> dict[str, Any]:
    """A new journal's state: where the run is headed (``target``: url without password, db_name, prefix, ...)."""
    return dict(target, run_id=None, pid=os.getpid(), host=socket.gethostname(), finished=False, offline=None,
                created=dt.datetime.now(dt.timezone.utc).isoformat())


class Recorder:
    """Journals the records of one run and writes them to MongoDB from a background thread.

    ``writer`` is ``None`` for an offline run: records stay in the journal for ``sacred-gpu sync``.
    ``flush_interval`` (s): the longest the idle writer thread sleeps between looks at the journal (a submitted
    record wakes it at once). While the journal cannot be written (a full disk), records are held in memory, up to
    :data:`MAX_HELD_BYTES`, and journaled in order as soon as it can be written again.
    """

    def __init__(self, journal: Journal, writer: MongoWriter | None, run_id: Any, *, flush_interval: float = 0.5):
        self.journal = journal
        self.run_id = run_id
        self.quarantine = Quarantine(journal)  # one per journal: its first entries are logged loudly, then DEBUG
        self.replayer = None if writer is None else Replayer(journal, writer, run_id, quarantine=self.quarantine)
        self.flush_interval = flush_interval
        self._wake = threading.Event()
        if self.replayer is not None:
            self.replayer.uploader = Uploader(self.replayer, on_done=self._wake.set)
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage_reported = False
        self._final_lock = threading.Lock()
        self._finalized: bool | None = None
        self._submit_lock = threading.Lock()
        self._held: collections.deque[bytes] = collections.deque()
        self._held_bytes = 0
        self.lost = 0  #: records neither journaled nor held (memory bound reached while the disk was full)

    @property
    def offline(self) -> bool:
        return self.replayer is None

    def start(self) -> None:
        if self.replayer is not None:
            self._thread = threading.Thread(target=self._run, name="sacred-gpu-writer", daemon=True)
            self._thread.start()

    def submit(self, rec: dict[str, Any]) -> None:
        """Journal a record (or hold it while the disk is full); the writer thread takes it from there. A record
        that cannot be encoded is set aside in the quarantine. Raises nothing for either."""
        try:
            data = frame(rec)
        except Exception as exc:  # noqa: BLE001 - InvalidDocument, OverflowError, ...: this record alone
            try:
                self.quarantine.add_unencodable(rec, self.run_id, short_error(exc, 300))
            except OSError as error:
                logger.error("sacred-gpu: the %s record of run %s cannot be encoded (%s) nor set aside (%s)",
                             rec.get("op"), self.run_id, short_error(exc), error)
            return
        with self._submit_lock:
            if not self._held:
                try:
                    self.journal.append_frame(data)
                except OSError as exc:
                    logger.warning("sacred-gpu: cannot write the journal %s (%s); records of run %s are held in "
                                   "memory until it can be written", self.journal.folder, exc, self.run_id)
                    self._hold(data)
            else:
                self._hold(data)
                self._drain()
        self._wake.set()

    def _hold(self, data: bytes) -> None:
        if self._held_bytes + len(data) > MAX_HELD_BYTES:
            if not self.lost:
                logger.error("sacred-gpu: the journal %s still cannot be written and %d MiB of records are held; "
                             "records of run %s are now LOST until it can", self.journal.folder,
                             self._held_bytes >> 20, self.run_id)
            self.lost += 1
            return
        self._held.append(data)
        self._held_bytes += len(data)

    def _drain(self) -> bool:
        """Journal the held records, in order; True when none is left."""
        count = len(self._held)
        while self._held:
            try:
                self.journal.append_frame(self._held[0])
            except OSError:
                return False
            self._held_bytes -= len(self._held.popleft())
        if count:
            logger.warning("sacred-gpu: the journal %s can be written again: %d held records journaled%s",
                           self.journal.folder, count, f", {self.lost} lost" if self.lost else "")
        return True

    def spool(self, path: str | os.PathLike[str]) -> dict[str, str]:
        """Keep a copy of a file for upload (the original may change or vanish): the fields of its ``file`` record,
        ``{"spooled": name in the journal}``, or ``{"original": absolute path}`` when no copy can be written (a full
        disk): the file is then uploaded from where it is."""
        try:
            return {"spooled": self.journal.spool_file(path)}
        except OSError as exc:
            if exc.filename is not None and os.fspath(exc.filename) == os.fspath(path):
                raise  # the file itself cannot be read: the caller's error, not the journal's
            logger.warning("sacred-gpu: cannot copy %s into the journal (%s); it will be uploaded from its place",
                           path, exc)
            return {"original": os.path.abspath(path)}

    def _run(self) -> None:
        assert self.replayer is not None
        delay = BACKOFF
        while not (self._closing.is_set() and self._deadline_passed()):
            closing = self._closing.is_set()
            try:
                caught_up = self.replayer.step()
                delay = BACKOFF
                if self._outage_reported:
                    self._outage_reported = False
                    logger.warning("sacred-gpu: MongoDB is reachable again; writing the journaled records")
                if caught_up and closing:
                    break
                if caught_up:
                    self._wake.wait(self.flush_interval)
                    self._wake.clear()
            except Exception as exc:  # noqa: BLE001 - the thread never dies while the run goes on
                if not self._outage_reported:
                    self._outage_reported = True
                    logger.warning("sacred-gpu: MongoDB write failed (%s); records wait in %s and are retried",
                                   short_error(exc), self.journal.folder)
                self._closing.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    _deadline: float | None = None

    def _deadline_passed(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def close(self, timeout: float) -> bool:
        """Write what is pending for at most ``timeout`` seconds; True if everything reached MongoDB.

        Whatever is left stays in the journal, which ``sacred-gpu sync`` completes.
        """
        with self._submit_lock:
            if not self._drain():
                logger.error("sacred-gpu: %d records of run %s could not be journaled (%s is not writable) and are "
                             "LOST", len(self._held) + self.lost, self.run_id, self.journal.folder)
        try:
            self.journal.mark_end()  # a copy arriving in pieces is whole once this record is in
            self.journal.update_state(finished=True, end=self.journal.end())  # a reader can tell a cut journal
        except OSError as exc:
            logger.warning("sacred-gpu: cannot mark the journal %s finished (%s)", self.journal.folder, exc)
        if self._thread is None:
            return self._finalize()
        self._deadline = time.monotonic() + timeout
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout + 1.0)  # the thread stops at the deadline, or after the attempt it is in
        if self._thread.is_alive():
            return False  # what it writes from now on is acknowledged; `sacred-gpu sync` does the rest
        assert self.replayer is not None and self.replayer.uploader is not None
        self._await_uploads(self.replayer.uploader, timeout)
        self.replayer.acknowledge()
        return self._finalize()

    def _await_uploads(self, uploader: Uploader, stall: float) -> bool:
        """Wait for the files still on their way while they make progress (at most ``stall`` seconds without any),
        saying every few seconds how far they are; False when they stalled."""
        last, changed, reported = None, time.monotonic(), time.monotonic()
        while pending := uploader.pending():
            marker = (len(pending), sum(upload.sent for upload in pending))
            now = time.monotonic()
            if marker != last:
                last, changed = marker, now
            elif now - changed > stall:
                logger.warning("sacred-gpu: the upload of %s (run %s) made no progress for %g s; it waits in %s for "
                               "`sacred-gpu sync`", ", ".join(u.name for u in pending), self.run_id, stall,
                               self.journal.folder)
                return False
            if now - reported >= PROGRESS_EVERY:
                reported = now
                logger.info("sacred-gpu: uploading %d file(s) of run %s: %.0f of %.0f MB", len(pending), self.run_id,
                            marker[1] / 2**20, sum(upload.size for upload in pending) / 2**20)
            uploader.wait(0.5)
        return True

    def _finalize(self) -> bool:
        """Remove the journal if everything is in MongoDB (or quarantined), else make it durable for
        ``sacred-gpu sync``; release its lock."""
        with self._final_lock:
            if self._finalized is None:
                done = not self.offline and not self.journal.pending()
                if done:
                    self.journal.remove()
                else:
                    try:
                        self.journal.sync()
                    except OSError as exc:
                        logger.warning("sacred-gpu: cannot sync the journal %s to disk (%s)", self.journal.folder, exc)
                    self.journal.close()
                    # a sync may take the journal once no upload of ours is in progress any more
                    uploader = self.replayer.uploader if self.replayer is not None else None
                    if uploader is None:
                        self.journal.unlock()
                if self.replayer is not None and self.replayer.uploader is not None:
                    self.replayer.uploader.stop(then=None if done else self.journal.unlock)
                self._finalized = done
            return self._finalized
