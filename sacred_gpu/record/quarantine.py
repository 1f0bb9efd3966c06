"""The quarantine: what could not be written to MongoDB, kept where a person sees it, never deleted by our code.

One folder per journal, beside the journals of its spool::

    <spool>/quarantine/<journal key>/entries.jsonl    one line per entry: when, kind, run, what, why, file
    <spool>/quarantine/<journal key>/state.json       the journal's state when the first entry was made
    <spool>/quarantine/<journal key>/damaged-<segment>-<offset>.bin    bytes of a damaged journal region
    <spool>/quarantine/<journal key>/refused-<n>.bson                  a record MongoDB refused (BSON)
    <spool>/quarantine/<journal key>/unencodable-<n>.txt               a record that could not be encoded (its repr)
    <spool>/quarantine/<journal key>/files/<name>                      a refused file record's spooled file

``sacred-gpu sync`` lists every entry and exits non-zero while any exist; only a person removes them, by hand or
with ``sacred-gpu sync --discard-quarantine``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bson

from sacred_gpu.record.journal import Journal
from sacred_gpu.record.journal_frames import Damage
from sacred_gpu.record.spool import FILE_MODE, QUARANTINE, make_private_folder

logger = logging.getLogger(__name__)

#: Entries of one journal logged as ERROR each; later ones are logged at DEBUG (``sacred-gpu sync`` lists them all).
LOUD_ENTRIES = 3
#: Folder of a spool that holds the quarantines of its journals.
FOLDER = QUARANTINE
_LOG = "entries.jsonl"


@dataclass(frozen=True)
class Entry:
    """One quarantined thing: ``kind`` is ``damaged``, ``refused`` or ``unencodable``; ``path`` the file keeping it."""

    folder: Path
    kind: str
    run_id: Any
    what: str
    reason: str
    path: Path
    time: str

    def describe(self) -> str:
        return f"{self.kind:<11} run {self.run_id}  {self.what}: {self.reason}  ({self.path})"


class Quarantine:
    """The quarantine of one journal (created on its first entry)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.folder = journal.quarantine_folder
        self._lock = threading.Lock()
        self._logged = 0

    def _report(self, message: str, *args: Any) -> None:
        """An ERROR for each of the first :data:`LOUD_ENTRIES` entries, then one saying the rest go to DEBUG."""
        self._logged += 1
        if self._logged <= LOUD_ENTRIES:
            logger.error(message, *args)
            if self._logged == LOUD_ENTRIES:
                logger.error("sacred-gpu: further records of %s set aside are logged at DEBUG; `sacred-gpu sync` "
                             "lists every one", self.journal.folder)
        else:
            logger.debug(message, *args)

    def _prepare(self) -> None:
        make_private_folder(self.folder)
        state = self.folder / "state.json"
        if not state.exists() and (self.journal.folder / "state.json").exists():
            shutil.copyfile(self.journal.folder / "state.json", state)

    def _write(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return path

    def _log(self, kind: str, run_id: Any, what: str, reason: str, path: Path) -> None:
        line = {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "kind": kind,
                "run_id": run_id, "what": what, "reason": reason, "file": path.name}
        fd = os.open(self.folder / _LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _count(self) -> int:
        return sum(1 for _ in self.folder.glob("*-*.*"))

    def add_damage(self, damage: Damage, run_id: Any) -> Path:
        """Keep a damaged region's bytes; returns the file holding them."""
        with self._lock:
            self._prepare()
            path = self._write(f"damaged-{damage.segment:06d}-{damage.start}.bin", damage.data)
            what = f"{len(damage.data)} damaged bytes at {damage.segment:06d}:{damage.start}"
            self._log("damaged", run_id, what, damage.reason, path)
        self._report("sacred-gpu: journal %s of run %s: %s (%s); set aside in %s, the records after it go on",
                     self.journal.folder, run_id, what, damage.reason, path)
        return path

    def add_refused(self, rec: dict[str, Any], run_id: Any, reason: str) -> Path:
        """Keep a record MongoDB refused (and, for a file record, its spooled file)."""
        with self._lock:
            self._prepare()
            path = self._write(f"refused-{self._count() + 1:04d}.bson", bson.encode(rec))
            if rec.get("op") == "file" and (self.journal.files / str(rec.get("spooled"))).is_file():
                make_private_folder(self.folder / "files")
                shutil.copyfile(self.journal.files / rec["spooled"], self.folder / "files" / rec["spooled"])
            self._log("refused", run_id, describe_record(rec), reason, path)
        self._report("sacred-gpu: the %s of run %s cannot be written (%s); set aside in %s, the records after it go on",
                     describe_record(rec), run_id, reason, path)
        return path

    def add_unencodable(self, rec: dict[str, Any], run_id: Any, reason: str) -> Path:
        """Keep a record that could not even be encoded, as text."""
        with self._lock:
            self._prepare()
            path = self._write(f"unencodable-{self._count() + 1:04d}.txt", repr(rec).encode("utf-8", "replace"))
            self._log("unencodable", run_id, describe_record(rec), reason, path)
        self._report("sacred-gpu: the %s of run %s cannot be encoded (%s); set aside in %s",
                     describe_record(rec), run_id, reason, path)
        return path


def describe_record(rec: dict[str, Any]) -> str:
    """A record in a few words: ``metric record of 'loss' (seq 3)``, ``update_run record (status, stop_time)``."""
    op = rec.get("op", "?")
    if op in ("metric", "chunk"):
        return f"{op} record of {rec.get('name')!r} (seq {rec.get('seq')})"
    if op == "update_run":
        return f"update_run record ({', '.join(sorted(rec.get('fields', {})))})"
    if op == "file":
        return f"file record ({rec.get('kind')} {rec.get('name') or rec.get('path')})"
    if op == "samples":
        return f"samples record ({len(rec.get('samples', []))} samples)"
    return f"{op} record"


def entries(spool: Path) -> list[Entry]:
    """Every quarantined entry of a spool, oldest first."""
    root = Path(spool) / FOLDER
    found: list[Entry] = []
    if not root.is_dir():
        return found
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        log = folder / _LOG
        if not log.exists():
            continue
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            found.append(Entry(folder, item.get("kind", "?"), item.get("run_id"), item.get("what", ""),
                               item.get("reason", ""), folder / str(item.get("file", "")), item.get("time", "")))
    return sorted(found, key=lambda entry: entry.time)


def discard(spool: Path) -> int:
    """Delete every quarantine of a spool (a person asked for it); returns how many entries were discarded."""
    count = len(entries(spool))
    shutil.rmtree(Path(spool) / FOLDER, ignore_errors=True)
    return count
