"""Files uploaded beside the records, so that a run's end is never held behind a checkpoint's upload.

The writer thread of a run hands each ``file`` record (an artifact, a resource, a value moved out of the run
document) to an :class:`Uploader` and goes on with the records behind it: the run's final status, stop time and
result reach MongoDB while a 400 MB checkpoint is still on its way. The journal is acknowledged only up to the first
upload not yet done (records behind it were applied, and applying them again after a crash is harmless), so nothing
is forgotten before MongoDB has it.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sacred_gpu import errors
from sacred_gpu.connection import short_error
from sacred_gpu.record.journal_frames import Position

if TYPE_CHECKING:
    from sacred_gpu.record.replayer import Replayer

logger = logging.getLogger(__name__)

#: Seconds between attempts at an upload that failed for a transient reason (doubling up to the maximum).
BACKOFF, MAX_BACKOFF = 0.2, 5.0
#: Attempts at an upload that fails for an unknown reason before its record is set aside.
MAX_ATTEMPTS = 5


@dataclass
class Upload:
    """One file record on its way: ``start`` is its position in the journal, ``size``/``sent`` in bytes."""

    start: Position
    rec: dict[str, Any]
    size: int
    sent: int = 0
    done: bool = False

    @property
    def name(self) -> str:
        return str(self.rec.get("name") or self.rec.get("path") or self.rec.get("spooled"))


class Uploader:
    """Uploads a run's files in journal order on a thread of its own (started on the first file)."""

    def __init__(self, replayer: Replayer, on_done: Any = None) -> None:
        """``on_done()`` is called after each upload ends (the writer thread then acknowledges it at once)."""
        self.replayer, self._on_done = replayer, on_done
        self._queue: collections.deque[Upload] = collections.deque()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_exit: list[Any] = []
        self._in_flight = False  # an attempt at an upload is talking to MongoDB now

    def submit(self, start: Position, rec: dict[str, Any]) -> None:
        """Queue the upload of a ``file`` record that starts at ``start`` in the journal."""
        path = self._path(rec)
        try:
            size = os.path.getsize(path)
        except OSError:
            size = 0  # the upload reports the missing file
        with self._changed:
            self._queue.append(Upload(start, rec, size))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sacred-gpu-upload", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def _path(self, rec: dict[str, Any]) -> str:
        return os.path.join(self.replayer.journal.files, rec["spooled"]) if rec.get("spooled") else rec["original"]

    # -- what the writer thread and the end of the run ask -----------------------------------------------------------
    def first_pending(self) -> Position | None:
        """Where the first upload not done yet starts (the journal is acknowledged up to there), or None."""
        with self._changed:
            return next((upload.start for upload in self._queue if not upload.done), None)

    def take_done(self) -> list[Upload]:
        """The uploads done at the head of the queue, removed from it (in journal order)."""
        with self._changed:
            done = []
            while self._queue and self._queue[0].done:
                done.append(self._queue.popleft())
            return done

    def pending(self) -> list[Upload]:
        with self._changed:
            return [upload for upload in self._queue if not upload.done]

    def wait(self, seconds: float) -> None:
        """Return when an upload made progress (or ended), or after ``seconds``."""
        with self._changed:
            self._changed.wait(seconds)

    def stop(self, then: Any = None) -> None:
        """No new attempt after the one in progress (the run's end gave up waiting); ``then()`` once no attempt is
        in progress (at once if none is)."""
        with self._changed:
            self._stop.set()
            busy = self._in_flight
            if busy and then is not None:
                self._on_exit.append(then)
            self._changed.notify_all()
        if not busy and then is not None:
            then()

    # -- the upload thread ------------------------------------------------------------------------------------------
    def _next(self) -> Upload | None:
        with self._changed:
            while not self._stop.is_set():
                upload = next((upload for upload in self._queue if not upload.done), None)
                if upload is not None:
                    return upload
                self._changed.wait()
        return None

    def _progress(self, upload: Upload) -> Any:
        def sent(count: int) -> None:
            with self._changed:
                upload.sent += count
                self._changed.notify_all()

        return sent

    def _run(self) -> None:
        try:
            while (upload := self._next()) is not None and self._upload(upload):
                with self._changed:
                    upload.done = True
                    self._changed.notify_all()
                if self._on_done is not None:
                    self._on_done()
        finally:
            self._idle()

    def _upload(self, upload: Upload) -> bool:
        """Upload one file, retrying transient failures; a refused one goes to the quarantine. False when stopped
        first (the record stays unacknowledged, for ``sacred-gpu sync``)."""
        replayer, attempts, delay = self.replayer, 0, BACKOFF
        while True:
            with self._changed:  # no attempt starts once stopped: then nothing of ours touches the journal's files
                if self._stop.is_set():
                    return False
                self._in_flight = True
            try:
                upload.sent = 0
                # its own remap: only sources (never uploaded here) are referenced by id from the run document
                replayer.writer.apply(replayer.run_id, upload.rec, replayer.journal.files, {}, retry=True,
                                      progress=self._progress(upload))
                return True
            except Exception as exc:  # noqa: BLE001 - classified: retried, or this file alone set aside
                kind = errors.classify(exc)
                attempts += kind is not errors.TRANSIENT
                if kind is errors.TRANSIENT or (kind is errors.UNKNOWN and attempts < MAX_ATTEMPTS):
                    logger.debug("sacred-gpu: upload of %s failed (%s); retrying", upload.name, short_error(exc))
                    self._idle()
                    self._stop.wait(delay)
                    delay = min(delay * 2, MAX_BACKOFF)
                    continue
                replayer.quarantine.add_refused(upload.rec, replayer.run_id, short_error(exc, 300))
                replayer.set_aside += 1
                return True
            finally:
                self._idle()

    def _idle(self) -> None:
        """The attempt in progress is over: run what waited for it (the journal's unlock) if stopped meanwhile."""
        with self._changed:
            self._in_flight = False
            then, self._on_exit = self._on_exit, []
        for callback in then:
            callback()
