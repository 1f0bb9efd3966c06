"""``sacred-gpu sync``: upload journaled runs (offline, or unfinished when MongoDB went away) to MongoDB.

Safe to run twice and safe to interrupt: an offline run's id is allocated once and kept in its journal, and every
record is applied idempotently from the last acknowledged position.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo.errors import PyMongoError

from sacred_gpu import connection, schema
from sacred_gpu.journal import Journal, journals
from sacred_gpu.recorder import Replayer
from sacred_gpu.writer import MongoWriter, RunIdTaken

logger = logging.getLogger(__name__)


@dataclass
class SyncResult:
    """What happened to one journal: ``synced`` (and removed if the run had ended), ``running`` (skipped: its
    process is alive), ``unreachable`` (MongoDB did not answer in time; the journal is kept) or ``failed``."""

    folder: Path
    run_id: Any
    outcome: str
    detail: str = ""


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
    state = journal.state()
    if not force and not state.get("finished") and _alive(state.get("pid")):
        return SyncResult(journal.folder, state.get("run_id"), "running", f"process {state['pid']} is still running")
    target_db = db_name or state.get("db_name") or connection.DEFAULT_DB
    where = connection.describe(url or state.get("url"), target_db)
    try:
        mongo = connection.open_client(None if client is not None else (url or state.get("url")), client)
        writer = MongoWriter(mongo[target_db], schema.Collections(state.get("prefix", "")))
        writer.ensure_indexes()
        run_id = state.get("run_id")
        for _ in range(10):
            if run_id is None:
                run_id = writer.next_run_id()
                journal.update_state(run_id=run_id)  # kept before anything is written with it
            try:
                done = Replayer(journal, writer, run_id, resumed=True).run(deadline=time.monotonic() + timeout)
                break
            except RunIdTaken:
                logger.warning("sacred-gpu: run id %s was taken meanwhile; allocating another", run_id)
                run_id = None
        else:
            return SyncResult(journal.folder, run_id, "failed", "no free run id")
    except PyMongoError as exc:
        return SyncResult(journal.folder, state.get("run_id"), "unreachable",
                          f"{where}: {connection.short_error(exc)}")
    if not done:
        return SyncResult(journal.folder, run_id, "unreachable", f"{where} did not take every record")
    if state.get("finished"):
        journal.remove()
    return SyncResult(journal.folder, run_id, "synced", where)


def sync_spool(spool: Path, **kwargs: Any) -> list[SyncResult]:
    """Upload every journal in ``spool``, oldest first."""
    results = []
    for journal in journals(spool):
        try:
            results.append(sync_journal(journal, **kwargs))
        finally:
            journal.close()
    return results
