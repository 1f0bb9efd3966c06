"""``sacred-gpu sync --follow DIR``: upload the journals of a folder another machine writes, as they grow.

A notebook on a hosted GPU (Colab) or a compute node with no route to MongoDB records OFFLINE into a folder that a
sync tool (Google Drive, rsync, NFS) copies to a machine that reaches MongoDB; there the follower uploads each
journal's new records every few seconds, exactly once (records are applied idempotently from the last acknowledged
position, as by ``sacred-gpu sync``).

The folder belongs to the other machine: the follower never writes into it (a one-way sync would overwrite what it
wrote, and deletes nothing there). What it keeps (how far each journal is acknowledged, the run id it allocated,
source files found stored, its quarantine) lives in a folder of its own on this machine: ``books``, by default
``<data dir>/follow/<hash of DIR>``.

The copy arrives in pieces and in any order: a segment may end in a record cut short, a later segment may arrive
before the end of an earlier one, an artifact's copy after its record, ``state.json`` (which says "finished" early)
before or after them. So the follower reads a journal in order and stops at the first record not wholly there (or
whose file copy has not arrived), moves to the next segment only past the ``seal`` record that ends a full one, and
takes a journal as complete at its ``end`` record (see :mod:`.journal`). The process that wrote it runs on another
host, so its pid says nothing here; a journal whose writer died without its ``end`` is followed on (its run shows
PROBABLY_DEAD on the board), and nothing of it is set aside for being late.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sacred_gpu.record import journal_frames as frames
from sacred_gpu.record.journal import END, SEAL, Journal
from sacred_gpu.record.journal_frames import Damage, Entry, Position
from sacred_gpu.record.spool import data_dir, make_private_folder, write_atomically
from sacred_gpu.record.sync import SyncResult, journals, sync_journal

logger = logging.getLogger(__name__)

#: Seconds between two looks at the followed folder.
INTERVAL = 2.0


def default_books(folder: Path) -> Path:
    """Where the follower of ``folder`` keeps its books: ``<data dir>/follow/<name>-<hash of its absolute path>``."""
    folder = Path(folder).absolute()
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    return data_dir() / "follow" / f"{folder.name}-{digest}"


class FollowedJournal(Journal):
    """A journal in a folder another machine writes, read as it arrives; its bookkeeping kept in ``books`` (this
    journal's own folder there)."""

    owned = False  # never deletes in the copy: its acknowledgements, lock and quarantine are kept in ``books``

    def __init__(self, folder: Path, books: Path) -> None:
        super().__init__(folder)
        self.books = make_private_folder(Path(books))

    # -- the follower's own state, beside the copy's ------------------------------------------------------------
    def _local(self) -> dict[str, Any]:
        path = self.books / "state.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def state(self) -> dict[str, Any]:
        """The copy's ``state.json`` (where the run is headed, its id once known), with what the follower decided
        over it (the run id it allocated, ``remap``); ``finished`` once the journal's ``end`` record was read (the
        copy's own says "finished" before its last bytes arrive). Empty until the copy's ``state.json`` arrived."""
        try:
            copied = super().state()
        except (ValueError, OSError):  # still arriving
            return {}
        if not copied:
            return {}
        local = self._local()
        return {**copied, **local, "finished": bool(local.get("ended"))}

    def write_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError("a followed journal's state.json is the other machine's")

    def update_state(self, **changes: Any) -> dict[str, Any]:
        with self._state_lock:
            local = {**self._local(), **changes}
            write_atomically(self.books / "state.json", json.dumps(local, indent=1, sort_keys=True))
            return self.state()

    @property
    def done(self) -> bool:
        """Whether the whole journal, its ``end`` included, is in MongoDB."""
        return bool(self._local().get("done"))

    def acked(self) -> Position:
        """As a journal's, but from its first segment until anything was acknowledged (a later segment may have
        arrived before the first)."""
        return super().acked() if (self.books / "acked").exists() else (1, 0)

    def remove(self) -> None:
        """Done with it: remembered in the books (the copy stays)."""
        self.update_state(done=True)
        self.unlock()

    def append_frame(self, data: bytes) -> None:
        raise NotImplementedError("a followed journal is the other machine's")

    # -- reading what has arrived -------------------------------------------------------------------------------
    def read(self, start: Position, max_records: int = 10_000, *,
             tail_is_damage: bool = False) -> Iterator[tuple[Entry, Position]]:
        """Records and damaged regions from ``start`` on, as far as they have wholly arrived (see the module's
        docstring; ``tail_is_damage`` is not used: a record cut short is one still arriving). A damaged record
        followed by whole ones was written so: it is a damaged region, as in any journal."""
        segment, offset = start
        count = 0
        while True:
            path = self._segment_path(segment)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                return  # not here yet
            sealed = False
            for entry, end in frames.read_segment(path, segment, offset, size, False):
                if not isinstance(entry, Damage):
                    op = entry.get("op")
                    if op == SEAL:
                        sealed = True
                        break
                    if op == END:
                        self.update_state(ended=True)
                        return
                    if op == "file" and entry.get("spooled") and not (self.files / entry["spooled"]).is_file():
                        return  # its copy has not arrived yet
                yield entry, (segment, end)
                count += 1
                if count >= max_records:
                    return
            if not sealed:
                return
            segment, offset = segment + 1, 0


class Follower:
    """Uploads the journals of ``folder`` as they grow (``books``: where its bookkeeping goes; ``client``, ``url``,
    ``db_name``, ``timeout``: as for ``sacred-gpu sync``)."""

    def __init__(self, folder: Path, books: Path | None = None, **sync_options: Any) -> None:
        self.folder = Path(folder)
        self.books = Path(books) if books is not None else default_books(self.folder)
        self.sync_options = sync_options
        self._reported: dict[Path, str] = {}

    def step(self) -> list[SyncResult]:
        """One look at the folder: upload what arrived of every journal not done yet. ``outcome`` of each:
        ``following`` (uploaded what has arrived), ``complete`` (all of it, its end included), ``waiting`` (its
        ``state.json`` has not arrived), ``busy`` (another follower has it), ``unreachable`` or ``failed``."""
        results = []
        for copy in journals(self.folder):
            journal = FollowedJournal(copy.folder, self.books / copy.folder.name)
            if journal.done:
                continue
            try:
                results.append(self._follow(journal))
            finally:
                journal.close()
                journal.unlock()
        return results

    def _follow(self, journal: FollowedJournal) -> SyncResult:
        if not journal.try_lock():
            return SyncResult(journal.folder, None, "busy", "another follower is uploading it")
        if not journal.state():
            return SyncResult(journal.folder, None, "waiting", "its state.json has not arrived")
        result = sync_journal(journal, force=True, **self.sync_options)
        if result.outcome == "synced":
            result.outcome = "complete" if journal.done else "following"
        self._report(result)
        return result

    def _report(self, result: SyncResult) -> None:
        said = f"{result.outcome} {result.detail}"
        if self._reported.get(result.folder) != said:
            self._reported[result.folder] = said
            logger.info("sacred-gpu: %s: run %s %s (%s)", result.folder.name, result.run_id, result.outcome,
                        result.detail)

    def run(self, interval: float = INTERVAL, stop: threading.Event | None = None,
            until_complete: bool = False) -> list[SyncResult]:
        """Look every ``interval`` seconds until ``stop`` is set (or, ``until_complete``, until every journal found
        is complete); returns the last look's results."""
        stop = stop or threading.Event()
        while True:
            results = self.step()
            if until_complete and all(r.outcome == "complete" for r in results):
                return results
            if stop.wait(interval):
                return results

