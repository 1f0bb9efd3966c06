"""The path of every record from the observer to MongoDB: journal first, then a background thread that writes.

:meth:`Recorder.submit` appends to the journal and returns: nothing on the caller's thread waits for MongoDB.
The writer thread reads what is not acknowledged yet from the journal (so memory stays bounded whatever the outage
length), applies it in order through :class:`~sacred_gpu.writer.MongoWriter`, and acknowledges it. While MongoDB
is unreachable, records wait on disk and the thread retries with backoff; :class:`Replayer` does that work, for the
writer thread and for ``sacred-gpu sync``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bson import ObjectId
from pymongo.errors import ConnectionFailure, PyMongoError

from sacred_gpu.connection import short_error
from sacred_gpu.journal import Journal, Position
from sacred_gpu.writer import MongoWriter

logger = logging.getLogger(__name__)

#: Environment variable that makes every run offline (journal only) when set to 1, true or yes.
OFFLINE_ENV = "SACRED_GPU_OFFLINE"
#: Seconds the end of a run waits for MongoDB to take the last records before leaving them to ``sacred-gpu sync``.
DEFAULT_FLUSH_TIMEOUT = 10.0

#: Records read from the journal per batch.
BATCH = 2000
#: Attempts at a record that fails for a reason other than connectivity before it is set aside.
MAX_ATTEMPTS = 5
#: Seconds the writer thread waits between attempts while MongoDB is unreachable (doubling up to the maximum).
BACKOFF, MAX_BACKOFF = 0.2, 5.0


class Replayer:
    """Applies a journal's unacknowledged records to MongoDB for one run id; remembers what it already tried."""

    def __init__(self, journal: Journal, writer: MongoWriter, run_id: Any, *, resumed: bool = False) -> None:
        """``resumed``: the journal was written by another process, which may have applied part of it."""
        self.journal, self.writer, self.run_id = journal, writer, run_id
        # source files found already stored: their ids replace ours (kept in the journal across syncs)
        self.remap = {ObjectId(ours): ObjectId(theirs) for ours, theirs in journal.state().get("remap", {}).items()}
        #: records before this position were attempted once (their writes may be in)
        self._tried: Position | None = (1 << 62, 0) if resumed else None
        self._attempts = 0

    def step(self) -> bool:
        """Apply one batch. True when nothing is pending. Raises ``ConnectionFailure`` when MongoDB is away.

        Records are read from disk one at a time as they are applied, so a failing attempt reads only what it
        tried (during an outage each retry costs one record's decoding, not a batch's).
        """
        start = self.journal.acked()
        done = start
        try:
            for rec, end in self.journal.read(start, BATCH):
                self._apply(rec, retry=self._tried is not None and done < self._tried)
                done = end
        except BaseException:
            following = next(iter(self.journal.read(done, 1)), None)  # the record that failed may be partly in
            self._tried = max(self._tried or done, following[1] if following else done)
            if done != start:
                self.journal.ack(done)
            raise
        if done == start:
            return True
        self.journal.ack(done)
        return False

    def _apply(self, rec: dict[str, Any], retry: bool) -> None:
        try:
            known = len(self.remap)
            self.writer.apply(self.run_id, rec, self.journal.files, self.remap, retry=retry)
            if len(self.remap) != known:
                self.journal.update_state(remap={str(k): str(v) for k, v in self.remap.items()})
            self._attempts = 0
        except ConnectionFailure:
            raise
        except (PyMongoError, OSError) as exc:
            self._attempts += 1
            if self._attempts < MAX_ATTEMPTS:
                raise
            self._set_aside(rec, exc)
            self._attempts = 0

    def _set_aside(self, rec: dict[str, Any], exc: BaseException) -> None:
        logger.error("sacred-gpu: a %s record of run %s failed %d times (%s); set aside in %s",
                     rec.get("op"), self.run_id, MAX_ATTEMPTS, exc, self.journal.folder / "rejected.bson")
        import bson

        with open(self.journal.folder / "rejected.bson", "ab") as handle:
            handle.write(bson.encode(rec))

    def run(self, deadline: float | None = None) -> bool:
        """Apply everything pending; True when done, False when MongoDB stayed unreachable until ``deadline``."""
        delay = BACKOFF
        while True:
            try:
                if self.step():
                    return True
                delay = BACKOFF
            except PyMongoError as exc:
                if deadline is not None and time.monotonic() + delay > deadline:
                    logger.debug("giving up replaying %s: %s", self.journal.folder, exc)
                    return False
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)


def offline_from_environment() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _create_journal(spool: Path, state: dict[str, Any]) -> Journal:
    """A journal in ``spool`` (private to the user: it may hold a URI with credentials), else in the temp dir."""
    try:
        spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        return Journal.create(spool, state)
    except OSError as exc:
        fallback = Path(tempfile.gettempdir()) / f"sacred-gpu-spool-{os.getuid() if hasattr(os, 'getuid') else 0}"
        logger.warning("sacred-gpu: cannot journal in %s (%s); using %s", spool, exc, fallback)
        fallback.mkdir(parents=True, exist_ok=True, mode=0o700)
        return Journal.create(fallback, state)


def open_recorder(writer: MongoWriter | None, spool: Path, target: dict[str, Any], run_id: Any, *,
                  reason: str = "") -> Recorder:
    """The recorder of a new run: online (``writer`` given, ``run_id`` allocated) or offline (``writer`` None).

    An offline run gets a provisional id (``offline-<journal>``, or the id Sacred was given) until it is synced;
    a WARNING says why it is offline and where it is journaled.
    """
    offline = writer is None
    state = dict(target, run_id=run_id, pid=os.getpid(), finished=False, offline=offline,
                 created=dt.datetime.now(dt.timezone.utc).isoformat())
    journal = _create_journal(spool, state)
    recorder = Recorder(journal, writer, run_id)
    if offline:
        recorder.run_id = run_id if run_id is not None else f"offline-{journal.folder.name.removeprefix('run-')}"
        logger.warning("sacred-gpu: the run goes on OFFLINE (%s); it is journaled in %s; upload it later with "
                       "`sacred-gpu sync %s`", reason, journal.folder, spool)
    return recorder


class Recorder:
    """Journals the records of one run and writes them to MongoDB from a background thread.

    ``writer`` is ``None`` for an offline run: records stay in the journal for ``sacred-gpu sync``.
    ``flush_interval`` (s): the longest the idle writer thread sleeps between looks at the journal (a submitted
    record wakes it at once).
    """

    def __init__(self, journal: Journal, writer: MongoWriter | None, run_id: Any, *, flush_interval: float = 0.5):
        self.journal = journal
        self.run_id = run_id
        self.replayer = None if writer is None else Replayer(journal, writer, run_id)
        self.flush_interval = flush_interval
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage_reported = False
        self._final_lock = threading.Lock()
        self._finalized: bool | None = None

    @property
    def offline(self) -> bool:
        return self.replayer is None

    def start(self) -> None:
        if self.replayer is not None:
            self._thread = threading.Thread(target=self._run, name="sacred-gpu-writer", daemon=True)
            self._thread.start()

    def submit(self, rec: dict[str, Any]) -> None:
        """Journal a record; the writer thread takes it from there."""
        self.journal.append(rec)
        self._wake.set()

    def spool(self, path: str | os.PathLike[str]) -> str:
        """Keep a copy of a file for upload (the original may change or vanish); returns its spooled name."""
        return self.journal.spool_file(path)

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
            except PyMongoError as exc:
                if not self._outage_reported:
                    self._outage_reported = True
                    logger.warning("sacred-gpu: MongoDB write failed (%s); records wait in %s and are retried",
                                   short_error(exc), self.journal.folder)
                self._closing.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)
            except Exception:  # noqa: BLE001 - the thread never dies while the run goes on
                logger.exception("sacred-gpu: writer thread error; retrying")
                self._closing.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)
        if self._closing.is_set():
            self._finalize()

    _deadline: float | None = None

    def _deadline_passed(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def close(self, timeout: float) -> bool:
        """Write what is pending for at most ``timeout`` seconds; True if everything reached MongoDB.

        Whatever is left stays in the journal, which ``sacred-gpu sync`` completes.
        """
        self.journal.update_state(finished=True)
        if self._thread is None:
            return self._finalize()
        self._deadline = time.monotonic() + timeout
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout + 1.0)  # the thread stops at the deadline, or after the attempt it is in
        return self._finalize() if not self._thread.is_alive() else False

    def _finalize(self) -> bool:
        """Remove the journal if everything is in MongoDB, else make it durable for ``sacred-gpu sync``."""
        with self._final_lock:
            if self._finalized is None:
                done = not self.offline and not self.journal.pending()
                if done:
                    self.journal.remove()
                else:
                    self.journal.sync()
                    self.journal.close()
                self._finalized = done
            return self._finalized
