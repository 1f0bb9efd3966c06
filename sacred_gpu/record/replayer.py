"""Replaying a journal into MongoDB: the records not acknowledged yet, in order, for one run id; what MongoDB refuses
and what the journal holds damaged goes to the quarantine, and the records after it go on. Used by the writer thread
of a live run (:mod:`.recorder`) and by ``sacred-gpu sync``."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from bson import ObjectId

from sacred_gpu import errors
from sacred_gpu.connection import short_error
from sacred_gpu.record.journal import Journal
from sacred_gpu.record.journal_frames import Damage, Entry, Position
from sacred_gpu.record.quarantine import Quarantine
from sacred_gpu.record.writer import MongoWriter, RunIdTaken

if TYPE_CHECKING:
    from sacred_gpu.record.uploads import Uploader

logger = logging.getLogger(__name__)

#: Records read from the journal per batch.
BATCH = 2000
#: Attempts at a record that fails for an unknown reason (see :mod:`sacred_gpu.errors`) before it is set aside.
MAX_ATTEMPTS = 5
#: Seconds the writer thread waits between attempts while MongoDB is unreachable (doubling up to the maximum).
BACKOFF, MAX_BACKOFF = 0.2, 5.0


class Replayer:
    """Applies a journal's unacknowledged records to MongoDB for one run id; remembers what it already tried.

    A damaged region of the journal, and a record MongoDB refuses (a permanent error, or an unknown one that
    repeats :data:`MAX_ATTEMPTS` times), go to the journal's quarantine and the records after them go on; a transient
    error (see :mod:`sacred_gpu.errors`) is raised for the caller to retry.
    """

    def __init__(self, journal: Journal, writer: MongoWriter, run_id: Any, *, resumed: bool = False,
                 quarantine: Quarantine | None = None) -> None:
        """``resumed``: the journal was written by another process, now gone, which may have applied part of it (an
        incomplete record at its end is then damage, not a record being written). ``quarantine``: the journal's,
        when the caller sets records aside too."""
        self.journal, self.writer, self.run_id = journal, writer, run_id
        self.quarantine = quarantine or Quarantine(journal)
        self.resumed = resumed
        # source files found already stored: their ids replace ours (kept in the journal across syncs)
        self.remap = {ObjectId(ours): ObjectId(theirs) for ours, theirs in journal.state().get("remap", {}).items()}
        #: records before this position were attempted once (their writes may be in)
        self._tried: Position | None = (1 << 62, 0) if resumed else None
        self._attempts = 0
        #: records and damaged regions this replayer set aside in the quarantine
        self.set_aside = 0
        #: uploads files beside the records (a live run's writer; ``sacred-gpu sync`` uploads in line)
        self.uploader: Uploader | None = None
        self._next: Position | None = None  # where to read on: records up to here were applied

    def _read(self, start: Position, count: int) -> Iterator[tuple[Entry, Position]]:
        return self.journal.read(start, count, tail_is_damage=self.resumed)

    def step(self) -> bool:
        """Apply one batch. True when nothing is pending. Raises the error of a failed attempt (see the class).

        Records are read from disk one at a time as they are applied, so a failing attempt reads only what it
        tried (during an outage each retry costs one record's decoding, not a batch's).
        """
        start = self._next if self._next is not None else self.journal.acked()
        done = start
        uploaded: list[str] = []  # spooled copies of the files written (or set aside) in line in this batch
        try:
            for entry, end in self._read(start, BATCH):
                if isinstance(entry, Damage):
                    self.quarantine.add_damage(entry, self.run_id)
                    self.set_aside += 1
                elif self.uploader is not None and entry.get("op") == "file" and entry.get("kind") != "source":
                    self.uploader.submit(done, entry)
                else:
                    self._apply(entry, retry=self._tried is not None and done < self._tried)
                    if entry.get("op") == "file" and entry.get("spooled"):
                        uploaded.append(entry["spooled"])
                done = end
        except BaseException:
            following = next(iter(self._read(done, 1)), None)  # the record that failed may be partly in
            self._tried = max(self._tried or done, following[1] if following else done)
            self._next = done
            self.acknowledge(uploaded)
            raise
        self._next = done
        self.acknowledge(uploaded)
        return done == start

    def acknowledge(self, uploaded: Sequence[str] = ()) -> None:
        """Remember that everything before the first upload in flight (else everything applied) is written, then
        remove the local copies of the files written (the spool holds only what is in flight)."""
        if self._next is None:
            return
        pending = self.uploader.first_pending() if self.uploader is not None else None
        done = self.uploader.take_done() if self.uploader is not None else []
        target = min(self._next, pending) if pending is not None else self._next
        if target > self.journal.acked():
            self.journal.ack(target)
        for name in [*uploaded, *(upload.rec.get("spooled") for upload in done)]:
            if name:
                self.journal.discard_copy(name)

    def _apply(self, rec: dict[str, Any], retry: bool) -> None:
        try:
            known = len(self.remap)
            self.writer.apply(self.run_id, rec, self.journal.files, self.remap, retry=retry)
            if len(self.remap) != known:
                self.journal.update_state(remap={str(k): str(v) for k, v in self.remap.items()})
            self._attempts = 0
        except RunIdTaken:
            raise
        except Exception as exc:  # noqa: BLE001 - classified: retried, or this record alone set aside
            kind = errors.classify(exc)
            if kind is errors.TRANSIENT:
                raise
            self._attempts += 1
            if kind is errors.UNKNOWN and self._attempts < MAX_ATTEMPTS:
                raise
            self.quarantine.add_refused(rec, self.run_id, short_error(exc, 300))
            self.set_aside += 1
            self._attempts = 0

    def run(self, deadline: float | None = None) -> bool:
        """Apply everything pending; True when done, False when MongoDB stayed unavailable until ``deadline``."""
        delay = BACKOFF
        while True:
            try:
                if self.step():
                    return True
                delay = BACKOFF
            except RunIdTaken:
                raise
            except Exception as exc:  # noqa: BLE001 - transient, or unknown and not yet set aside: retried
                if deadline is not None and time.monotonic() + delay > deadline:
                    logger.debug("giving up replaying %s: %s", self.journal.folder, exc)
                    return False
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
