"""``sacred-gpu sync``: upload journaled runs (offline, or unfinished when MongoDB went away) to MongoDB.

Safe to run twice, at once and safe to interrupt: one sync works on a journal at a time (the journal's lock, also
held by the process recording the run), an offline run's id is allocated once and kept in its journal, and every
record is applied idempotently from the last acknowledged position. What MongoDB refuses, and damaged journal
regions, go to the spool's quarantine (:mod:`sacred_gpu.record.quarantine`).

Journals keep no password: a URL's password comes from ``$SACRED_GPU_MONGO_PASSWORD`` or the ``--mu`` URL.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sacred_gpu import connection, errors, schema
from sacred_gpu.record.journal import Journal
from sacred_gpu.record.replayer import Replayer
from sacred_gpu.record.writer import MongoWriter, RunIdTaken

logger = logging.getLogger(__name__)

#: Environment variable holding the password of the user named in a journal's URL.
PASSWORD_ENV = "SACRED_GPU_MONGO_PASSWORD"


@dataclass
class SyncResult:
    """What happened to one journal: ``synced`` (and removed if the run had ended), ``running`` (skipped: its
    process is alive), ``busy`` (skipped: another sync holds it), ``unreachable`` (MongoDB did not answer in time;
    the journal is kept) or ``failed``. ``set_aside``: records and damaged regions put in the quarantine."""

    folder: Path
    run_id: Any
    outcome: str
    detail: str = ""
    set_aside: int = 0


def journals(spool: Path) -> list[Journal]:
    """Every run journal in a spool directory, oldest first."""
    spool = Path(spool)
    if not spool.is_dir():
        return []
    folders = []
    for path in spool.iterdir():
        try:
            if path.is_dir() and (path / "state.json").exists():
                folders.append((path.stat().st_mtime, path))
        except FileNotFoundError:  # removed by a sync running beside us
            continue
    return [Journal(folder) for _, folder in sorted(folders)]


def _recording(journal: Journal, state: dict[str, Any]) -> str | None:
    """Why the journal's run may still be recording (its process is alive here; on another host, whose processes
    cannot be seen from here, its journal was written to in the last :data:`schema.DEAD_AFTER` seconds: its
    heartbeats are records), or ``None``."""
    host = state.get("host")
    if host and host != socket.gethostname():
        age = time.time() - journal.last_write()
        return f"its process runs on {host} and wrote to the journal {age:.0f} s ago" \
            if age < schema.DEAD_AFTER else None
    return f"process {state['pid']} is still running" if _alive(state.get("pid")) else None


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sync_journal(journal: Journal, *, client: Any = None, url: str | None = None, db_name: str | None = None,
                 force: bool = False, timeout: float = 30.0) -> SyncResult:
    """Upload one journal. ``client``/``url``/``db_name`` override where the run was headed; ``timeout`` (s)
    bounds the wait for an unreachable MongoDB."""
    if not journal.try_lock():
        return SyncResult(journal.folder, journal.state().get("run_id"), "busy",
                          "its run is being recorded or another sync is uploading it")
    state = journal.state()
    if not state:  # removed by the sync that held the lock before us
        return SyncResult(journal.folder, None, "gone", "uploaded by another sync meanwhile")
    why = None if force or state.get("finished") else _recording(journal, state)
    if why:
        return SyncResult(journal.folder, state.get("run_id"), "running", why)
    target_url = url or connection.with_password(state.get("url"), os.environ.get(PASSWORD_ENV))
    target_db = db_name or state.get("db_name") or connection.DEFAULT_DB
    where = connection.describe(target_url, target_db)
    run_id = state["run_id"] if state.get("run_id") is not None else state.get("attempted_run_id")
    replayer = None
    try:
        kwargs = connection.WRITE_TIMEOUTS if client is None else {}
        mongo = connection.open_client(None if client is not None else target_url, client, **kwargs)
        writer = MongoWriter(connection.database(mongo, target_db, state.get("write_concern")),
                             schema.Collections(state.get("prefix", "")))
        writer.ensure_indexes()
        for _ in range(10):
            if run_id is None:
                run_id = writer.next_run_id()
                journal.update_state(run_id=run_id)  # kept before anything is written with it
            try:
                replayer = Replayer(journal, writer, run_id, resumed=True)
                done = replayer.run(deadline=time.monotonic() + timeout)
                break
            except RunIdTaken:
                logger.warning("sacred-gpu: run id %s was taken meanwhile; allocating another", run_id)
                run_id = None
        else:
            return SyncResult(journal.folder, run_id, "failed", "no free run id")
    except Exception as exc:  # noqa: BLE001 - classified: unreachable, or refused (e.g. no privilege)
        outcome = "unreachable" if errors.is_transient(exc) else "failed"
        return SyncResult(journal.folder, run_id, outcome, f"{where}: {connection.short_error(exc, 300)}",
                          replayer.set_aside if replayer else 0)
    if not done:
        return SyncResult(journal.folder, run_id, "unreachable", f"{where} did not take every record",
                          replayer.set_aside)
    if state.get("finished"):
        journal.remove()
    return SyncResult(journal.folder, run_id, "synced", where, replayer.set_aside)


def sync_spool(spool: Path, **kwargs: Any) -> list[SyncResult]:
    """Upload every journal in ``spool``, oldest first."""
    results = []
    for journal in journals(spool):
        try:
            results.append(sync_journal(journal, **kwargs))
        except FileNotFoundError:  # removed by a sync running beside us
            continue
        finally:
            journal.close()
            journal.unlock()
    return results
