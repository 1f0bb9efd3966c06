"""How a run starts: its journal first, then its document and sources online within ``start_timeout``, or offline;
then sampling."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import bson
import pymongo
from pymongo.errors import DuplicateKeyError
from sacred.utils import ObserverError

from sacred_gpu import connection, errors, schema
from sacred_gpu.record.guards import never_raises
from sacred_gpu.record.journal import Journal
from sacred_gpu.record.recorder import (
    initial_state,
    open_journal,
    start_recorder,
)
from sacred_gpu.sampling.devices import RunGpus
from sacred_gpu.sampling.gpu import gpu_inventory
from sacred_gpu.sampling.monitor import SystemMonitor

logger = logging.getLogger(__name__)


class RunStart:
    """Part of :class:`~sacred_gpu.record.observer.GpuMongoObserver` (whose ``__init__`` sets the state used here)."""

    def _begin(self, ex_info: dict, command: str, host_info: dict, config: dict, meta_info: dict,
               fields: dict[str, Any], _id: Any) -> Any:
        """Open the run's journal, then insert the run document: online, or offline when MongoDB cannot take it
        within ``start_timeout`` seconds.

        The journal comes first, so nothing reaches MongoDB for a run that cannot be journaled (such a run goes on
        unrecorded, with one ERROR). Online, the sources and the run document are written before the run starts (so
        the id is MongoDB's); offline, they are journaled like every later record and written by ``sacred-gpu sync``.
        """
        if self.recorder is not None:
            raise ObserverError(f"sacred-gpu: this GpuMongoObserver is already recording run {self.run_id}: it is "
                                "attached to the run twice (is it in ex.observers twice? a notebook cell run again "
                                "appends it again)")
        self._reset()
        self._own_lines.attach()  # from here to the run's end, our log lines stay out of its captured output
        sources = [(name, os.path.abspath(os.path.join(ex_info["base_dir"], name)), md5)
                   for name, md5 in ex_info.get("sources", [])]
        host = schema.bson_safe(dict(host_info))
        self._gpus = RunGpus.from_environment(self._nvml)  # one NVML session for the whole run
        host["gpu_inventory"] = self._inventory = gpu_inventory(self._gpus)
        if not self.sampling:
            self._gpus.close()
        doc = {"experiment": schema.bson_safe(dict(ex_info)), "command": command, "host": host,
               "config": schema.flatten(config), "meta": schema.bson_safe(meta_info), **fields}
        try:
            journal = open_journal(self.spool_dir, initial_state(self.target))
        except OSError as exc:
            logger.error("sacred-gpu: this run of %r is NOT recorded: %s", ex_info.get("name"), exc)
            self._own_lines.detach()
            self._gpus.close()
            return _id
        doc, moved = self._movable(doc, journal)
        reason = "offline mode was asked for"
        if not self.offline:
            run_id, reason = self._start_online(doc, sources, _id, journal)
            if reason is None:
                self.run_id = run_id
                self.recorder = start_recorder(journal, self.writer, run_id)
                self._submit_moved(moved)
                return run_id
        self.recorder = start_recorder(journal, None, _id, reason=reason)
        self.run_id = self.recorder.run_id
        self._submit_moved(moved)
        doc["experiment"]["sources"] = []
        for name, path, md5 in sources:
            file_id = schema.new_object_id()
            self._submit("file", kind="source", file_id=file_id, path=path, md5=md5, **self.recorder.spool(path))
            doc["experiment"]["sources"].append([name, file_id])
        self._submit("insert_run", doc=doc)
        return self.run_id

    def _movable(self, doc: dict[str, Any], journal: Journal) -> tuple[dict[str, Any], list[tuple[Any, str]]]:
        """The run document with values past half of MongoDB's 16 MB moved out (spooled for upload), and them."""
        stubbed, large = schema.stub_large_values(doc, schema.STUB_BUDGET // 2, seed=self._stub_seed)
        try:
            moved = [(value, journal.spool_bytes(value.data, ".bson")) for value in large]
        except OSError as exc:  # MongoDB refuses the whole document then: it is quarantined at sync, not lost
            logger.error("sacred-gpu: cannot spool the large values of the run document (%s)", exc)
            stubbed, moved = doc, []
        self._doc_bytes = len(bson.encode(stubbed)) if large else len(bson.encode(doc))
        return stubbed, moved

    def _start_online(self, doc: dict[str, Any], sources: list[tuple[str, str, str]], _id: Any,
                      journal: Journal) -> tuple[Any, str | None]:
        """Store the sources and insert the run document, waiting at most ``start_timeout`` seconds whatever the
        server does. Returns ``(run id, None)``, or ``(None, why the run goes offline)``.

        The work runs on a thread of its own, under pymongo's ``timeout`` for the same time. When the run goes
        offline after an insert was sent (a timeout: the server may still apply it), the id it was sent with is
        left in the journal, so ``sacred-gpu sync`` completes that document instead of inserting a second one.
        """
        outcome: dict[str, Any] = {}
        lock, finished, abandoned = threading.Lock(), threading.Event(), threading.Event()
        doc = dict(doc, experiment=dict(doc["experiment"]))  # the offline path may fill its own copy meanwhile

        def start() -> None:
            try:
                with pymongo.timeout(min(self.start_timeout, self._server_selection_timeout())):
                    self.writer.database.command("ping")  # fails as fast as the client is told to when no server is up
                with pymongo.timeout(max(0.0, deadline - time.monotonic())):
                    self._ensure_indexes()
                    doc["experiment"]["sources"] = [[name, self.writer.put_deduplicated(path, md5)]
                                                    for name, path, md5 in sources]
                    outcome["run_id"] = self.writer.insert_run(dict(doc, _id=_id) if _id is not None else doc)
            except BaseException as exc:  # noqa: BLE001 - reported by the training thread
                outcome["error"] = exc
            with lock:
                finished.set()
                offline = abandoned.is_set() or "error" in outcome
            if offline and _id is None and doc.get("_id") is not None:
                try:
                    journal.update_state(attempted_run_id=doc["_id"])
                except OSError as exc:
                    logger.warning("sacred-gpu: cannot note run id %s in %s (%s)", doc["_id"], journal.folder, exc)

        deadline = time.monotonic() + self.start_timeout
        threading.Thread(target=start, name="sacred-gpu-start", daemon=True).start()
        finished.wait(self.start_timeout)
        with lock:
            if not finished.is_set():
                abandoned.set()
                return None, f"MongoDB at {self.where} did not answer within start_timeout={self.start_timeout:g} s"
        error = outcome.get("error")
        if error is None:
            return outcome["run_id"], None
        if isinstance(error, DuplicateKeyError) and _id is not None:
            journal.remove()
            raise ObserverError(f"sacred-gpu: run id {_id!r} is already taken in {self.where}") from error
        kind = errors.classify(error)
        if kind is errors.TRANSIENT:
            return None, f"MongoDB at {self.where} cannot be reached: {connection.short_error(error)}"
        what = "refused" if kind is errors.PERMANENT else "could not store"
        logger.error("sacred-gpu: MongoDB at %s %s the run document: %s", self.where, what,
                     connection.short_error(error, 300), exc_info=error if kind is errors.UNKNOWN else None)
        return None, f"MongoDB at {self.where} {what} the run document; fix the cause, then sync"

    def _server_selection_timeout(self) -> float:
        """Seconds the client waits for a server to be selected (``serverSelectionTimeoutMS``)."""
        value = None if connection.is_mongomock(self._client) else getattr(
            getattr(self._client, "options", None), "server_selection_timeout", None)
        return float(value) if isinstance(value, (int, float)) else self.start_timeout

    def _ensure_indexes(self) -> None:
        """Create the indexes; a refusal (e.g. no privilege to create them) is reported once and the run goes on."""
        try:
            self.writer.ensure_indexes()
        except Exception as exc:  # noqa: BLE001 - classified below
            if errors.is_transient(exc):
                raise
            self._report_failure("creating indexes", exc)

    @never_raises
    def _start_monitor(self) -> None:
        if not self.sampling:
            return
        names = {gpu["index"]: gpu["name"] for gpu in self._inventory if gpu.get("name")}
        self.monitor = SystemMonitor(self.sample_interval, self.slow_sample_interval, session=self._gpus.session,
                                     devices=self._gpus.selected, gpu_names=names)
        self.monitor.start()
