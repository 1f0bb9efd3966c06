"""``GpuMongoObserver``: turns Sacred's run events into records; the recorder journals them and writes them."""

from __future__ import annotations

import functools
import logging
import mimetypes
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, TypeVar

import bson
import pymongo
import sacred.run
from bson import ObjectId
from pymongo.errors import DuplicateKeyError
from sacred.commandline_options import cli_option
from sacred.dependencies import get_digest
from sacred.observers.base import RunObserver
from sacred.utils import ObserverError

from sacred_gpu import connection, errors, schema
from sacred_gpu.record.gc_freeze import GcFreeze
from sacred_gpu.record.journal import Journal, default_spool
from sacred_gpu.record.metric_records import MetricSeries
from sacred_gpu.record.own_lines import OwnLines
from sacred_gpu.record.recorder import (
    DEFAULT_FLUSH_TIMEOUT,
    Recorder,
    initial_state,
    offline_from_environment,
    open_journal,
    start_recorder,
)
from sacred_gpu.record.writer import MongoWriter, record
from sacred_gpu.sampling.gpu import gpu_inventory
from sacred_gpu.sampling.monitor import SystemMonitor, Window

logger = logging.getLogger(__name__)

#: Sacred's default priority for its MongoObserver.
DEFAULT_PRIORITY = 30
#: Seconds the start of a run waits for MongoDB in all before the run goes on offline.
DEFAULT_START_TIMEOUT = 5.0

F = TypeVar("F", bound=Callable[..., Any])


def _never_raises(method: F) -> F:
    """Run an event handler so that no exception reaches Sacred (which would drop the observer for the run)."""

    @functools.wraps(method)
    def guarded(self: GpuMongoObserver, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the training run must go on, whatever failed here
            self._report_failure(method.__name__, exc)
            return None

    return guarded  # type: ignore[return-value]


class GpuMongoObserver(RunObserver):
    """A drop-in replacement for Sacred's ``MongoObserver`` that also records the GPUs and never loses a run.

    Parameters: ``url`` (a MongoDB URI or ``host:port``) and ``db_name``, or ``client`` (a ``pymongo.MongoClient``
    or a ``mongomock.MongoClient``) and ``db_name``; ``collection_prefix`` as in Sacred (``PREFIX_runs``,
    ``PREFIX_metrics``); ``priority`` (Sacred's default 30); ``sampling``: sample GPUs and host through the run;
    ``sample_interval`` / ``slow_sample_interval``: seconds between samples of the fast / slow fields;
    ``spool_dir``: where runs are journaled (default ``$SACRED_GPU_SPOOL`` or the user's data directory);
    ``offline``: record to the journal only, for ``sacred-gpu sync`` (default ``$SACRED_GPU_OFFLINE``);
    ``flush_timeout``: seconds the end of a run waits for MongoDB before leaving the rest to ``sacred-gpu sync``;
    ``start_timeout``: seconds the start of a run waits for MongoDB in all (whatever the server does) before the
    run goes on offline; ``write_concern``: pymongo ``WriteConcern`` arguments for every write, e.g.
    ``{"w": "majority", "wtimeout": 10000}`` on a replica set (unacknowledged writes, ``w=0``, are refused);
    ``output_cap``: characters of captured output kept in the run document (head and tail);
    ``output_artifact``: also store the whole captured output as the artifact ``captured_out.txt`` at the end;
    ``freeze_gc``: leave the objects alive at the start of the run out of CPython's garbage collections until its
    end (``gc.freeze``), which cuts the collector's pauses in the training loop but keeps cyclic garbage older than
    the run (a model dropped in main) until the run ends, and costs a full collection at the start: off by default
    (see ``sacred_gpu.record.gc_freeze``);
    ``nvml``: a pynvml-compatible module to read GPUs through (default ``pynvml``; ``sacred_gpu.sampling.fake_nvml``
    simulates GPUs). Other keyword arguments go to ``pymongo.MongoClient``.
    """

    def __init__(
        self,
        url: str | None = None,
        db_name: str = connection.DEFAULT_DB,
        *,
        client: Any = None,
        collection_prefix: str = "",
        priority: int = DEFAULT_PRIORITY,
        sampling: bool = True,
        sample_interval: float = 1.0,
        slow_sample_interval: float = 10.0,
        spool_dir: str | os.PathLike[str] | None = None,
        offline: bool | None = None,
        flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        write_concern: dict[str, Any] | None = None,
        output_cap: int = schema.OUTPUT_CAP,
        output_artifact: bool = False,
        freeze_gc: bool = False,
        nvml: Any = None,
        **client_kwargs: Any,
    ) -> None:
        if sampling and (sample_interval <= 0 or slow_sample_interval <= 0):
            raise ValueError("sample_interval and slow_sample_interval must be positive seconds; "
                             "pass sampling=False to turn sampling off")
        self.priority = priority
        self.sampling, self.sample_interval, self.slow_sample_interval = sampling, sample_interval, slow_sample_interval
        self.offline = offline_from_environment() if offline is None else offline
        self.flush_timeout, self.output_cap, self.output_artifact = flush_timeout, output_cap, output_artifact
        self.start_timeout = start_timeout
        # absolute now: a run that changes the working directory must not lose its journal
        self.spool_dir = (Path(spool_dir).expanduser() if spool_dir is not None else default_spool()).absolute()
        self.where = connection.describe(url if client is None else type(client).__name__, db_name)
        # the journal keeps no password: `sacred-gpu sync` takes it from its environment or command line
        self.target = {"url": connection.without_password(url), "db_name": db_name, "prefix": collection_prefix,
                       "write_concern": write_concern}
        if client is None:
            client_kwargs = {**connection.WRITE_TIMEOUTS, **client_kwargs}
        self._client = connection.open_client(url, client, **client_kwargs)
        self.writer = MongoWriter(connection.database(self._client, db_name, write_concern),
                                  schema.Collections(collection_prefix))
        self._nvml = nvml
        self.freeze_gc, self._gc = freeze_gc, GcFreeze()
        self._lock = threading.Lock()
        self._beat_thread: threading.Thread | None = None  # Sacred's heartbeat thread, seen in log_metrics
        self._finisher: threading.Thread | None = None  # records the end of a run whose last beat came late
        self._reset()

    def __repr__(self) -> str:
        return f"GpuMongoObserver({self.where})"

    # -- state of the current run ---------------------------------------------------------------------------------
    def _reset(self) -> None:
        if self._finisher is not None:  # the previous run's end is still being recorded
            self._finisher.join()
            self._finisher = None
        self.run_id: Any = None
        self.recorder: Recorder | None = None
        self._reported: set[str] = set()  # failures reported at WARNING in this run (repeats go to DEBUG)
        self._ended = False  # the run's journal is closed: events now come too late
        self.monitor: SystemMonitor | None = None
        self._info: dict[str, Any] | None = None
        self._output = ""
        self._beat_thread = None
        self._inventory: list[dict[str, Any]] = []
        self._series: dict[str, MetricSeries] = {}
        self._system_series: dict[str, MetricSeries] = {}  # the observer's own (``sys/...``), apart from the user's
        self._seq = 0
        self._artifacts: list[dict[str, Any]] = []
        self._resources: list[list[str]] = []
        self._stub_seed = uuid.uuid4().hex  # values moved to GridFS get ids from it: each is uploaded once
        self._moved: set[ObjectId] = set()
        self._doc_bytes = 0  # BSON size of the run document as inserted
        self._own_lines = OwnLines()

    def _not_recording(self, event: str, points: int = 0) -> bool:
        """Whether the run has no journal to take ``event``: it is not recorded (one ERROR said so at its start), or
        the event came after the run's end was recorded, which is a bug, logged as an ERROR with what it carried."""
        if self.recorder is not None:
            return False
        if self._ended:
            logger.error("sacred-gpu: %s of run %s arrived after the run's end was recorded; %d points it carried are "
                         "not recorded", event, self.run_id, points)
        return True

    def _report_failure(self, event: str, exc: BaseException) -> None:
        """Log a failed event: the first of each kind as a WARNING with its traceback, repeats at DEBUG."""
        if event in self._reported:
            logger.debug("sacred-gpu: %s failed again for run %s: %s", event, self.run_id, connection.short_error(exc))
            return
        self._reported.add(event)
        logger.warning("sacred-gpu: %s failed for run %s (%s): %s; the run goes on", event, self.run_id, self.where,
                       connection.short_error(exc, 300), exc_info=exc)

    def _submit(self, op: str, **fields: Any) -> None:
        self._submit_record(record(op, **fields))

    def _submit_record(self, rec: dict[str, Any]) -> None:
        recorder = self.recorder
        if not self._not_recording(f"a {rec['op']} record"):
            recorder.submit(rec)  # type: ignore[union-attr]

    def _update_run(self, fields: dict[str, Any]) -> None:
        """Submit a ``$set`` of run fields, values that would take the document past 16 MB moved to GridFS."""
        recorder = self.recorder
        if self._not_recording("an update of the run document"):
            return
        fields, large = schema.stub_large_values(fields, schema.STUB_BUDGET - self._doc_bytes, seed=self._stub_seed)
        self._submit_moved([(value, recorder.journal.spool_bytes(value.data, ".bson")) for value in large])
        self._submit("update_run", fields=fields)

    def _submit_moved(self, moved: list[tuple[schema.LargeValue, str]]) -> None:
        """Submit the upload of each moved value (spooled) not uploaded before."""
        for value, spooled in moved:
            if value.file_id not in self._moved:
                self._moved.add(value.file_id)
                self._submit("file", kind="value", file_id=value.file_id, spooled=spooled, name=value.path)

    # -- start ----------------------------------------------------------------------------------------------------
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
        host["gpu_inventory"] = self._inventory = gpu_inventory(self._nvml)
        doc = {"experiment": schema.bson_safe(dict(ex_info)), "command": command, "host": host,
               "config": schema.flatten(config), "meta": schema.bson_safe(meta_info), **fields}
        try:
            journal = open_journal(self.spool_dir, initial_state(self.target))
        except OSError as exc:
            logger.error("sacred-gpu: this run of %r is NOT recorded: %s", ex_info.get("name"), exc)
            self._own_lines.detach()
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

    def queued_event(self, ex_info, command, host_info, queue_time, config, meta_info, _id):  # noqa: ANN001
        """A run queued with ``-q``: stored with status QUEUED."""
        run_id = self._begin(ex_info, command, host_info, config, meta_info, {"status": schema.QUEUED}, _id)
        self._close()
        return run_id

    def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):  # noqa: ANN001
        """Record the run document (status RUNNING) and start sampling; returns the run id Sacred will use."""
        fields = {
            "format": schema.FORMAT,
            "start_time": start_time,
            "status": schema.RUNNING,
            "resources": [],
            "artifacts": [],
            "captured_out": "",
            "info": {},
            "heartbeat": None,
        }
        run_id = self._begin(ex_info, command, host_info, config, meta_info, fields, _id)
        if self.recorder is None:  # not recorded: nothing to sample for
            return run_id
        if self.freeze_gc:
            self._gc.start()
        self._start_monitor()
        return run_id

    @_never_raises
    def _start_monitor(self) -> None:
        if not self.sampling:
            return
        names = {gpu["index"]: gpu["name"] for gpu in self._inventory if gpu.get("name")}
        self.monitor = SystemMonitor(self.sample_interval, self.slow_sample_interval, nvml=self._nvml,
                                     gpus=bool(self._inventory), gpu_names=names)
        self.monitor.start()

    # -- system metrics -------------------------------------------------------------------------------------------
    def _record_window(self, window: Window | None, info: dict[str, Any]) -> dict[str, Any]:
        """Record a window's samples (tier 2) and series points (tier 1); return the run fields to ``$set``."""
        if window is None:
            return {}
        try:
            if window.samples:
                self._submit("samples", samples=[{"t": t, "values": values} for t, values in window.samples])
            for name, (step, value, stamp) in window.points.items():
                self._append_series(name, [step], [value], [stamp], info, system=True)
        except Exception as exc:  # noqa: BLE001 - the heartbeat's own fields are still recorded
            self._report_failure("system metrics", exc)
        return {schema.SYSTEM_FIELD: window.rollups} if window.rollups else {}

    def _final_fields(self) -> dict[str, Any]:
        """Stop sampling and record what is left; the roll-ups (and info, for new series) go with the final status."""
        if self.monitor is None:
            return {}
        info = self._info if self._info is not None else {}
        known = len(info.get("metrics", []))
        try:
            window = self.monitor.stop()
        except Exception as exc:  # noqa: BLE001
            self._report_failure("stopping the sampler", exc)
            window = None
        self.monitor = None
        fields = self._record_window(window, info)
        if len(info.get("metrics", [])) > known:
            fields["info"] = schema.flatten(info)
        return fields

    # -- during the run -------------------------------------------------------------------------------------------
    @_never_raises
    def heartbeat_event(self, info, captured_out, beat_time, result):  # noqa: ANN001
        """Record info, the captured output so far (capped), the beat time, the intermediate result, system metrics."""
        if self._not_recording("heartbeat_event"):
            return
        self._info, self._output = info, self._own_lines.strip(captured_out or "")
        fields = self._record_window(self.monitor.window() if self.monitor else None, info)
        fields.update(
            {
                **self._metric_rollups(),
                "info": schema.flatten(info),
                "captured_out": schema.cap_output(self._output, self.output_cap),
                "heartbeat": beat_time,
                "result": schema.flatten(result),
            }
        )
        self._update_run(fields)

    @_never_raises
    def log_metrics(self, metrics_by_name, info):  # noqa: ANN001
        """Record the points logged since the last heartbeat; reference new series in ``info["metrics"]``."""
        if self._not_recording("log_metrics", sum(len(series["values"]) for series in metrics_by_name.values())):
            return
        self._beat_thread = threading.current_thread()
        for name, series in metrics_by_name.items():
            values = [schema.metric_value(value) for value in series["values"]]
            steps, stamps = series["steps"], series["timestamps"]
            if None in values:
                if f"values of {name}" not in self._reported:
                    self._reported.add(f"values of {name}")
                    logger.warning("sacred-gpu: metric %r got values that are not numbers; they are dropped", name)
                kept = [i for i, value in enumerate(values) if value is not None]
                steps, values, stamps = [steps[i] for i in kept], [values[i] for i in kept], [stamps[i] for i in kept]
            if values:
                self._append_series(name, list(steps), values, list(stamps), info)

    def _append_series(self, name: str, steps: list, values: list, stamps: list, info: dict[str, Any],
                       system: bool = False) -> None:
        """Append to the run's series ``name`` (the user's, or with ``system`` the observer's own: two namespaces, so
        a user's ``sys/...`` metric is kept as logged); a new series is referenced in ``info["metrics"]`` as Sacred
        does, the observer's marked with its origin."""
        owned = self._system_series if system else self._series
        series = owned.get(name)
        if series is None:
            series = owned[name] = MetricSeries(name, schema.new_object_id(), system=system)
            entry = {"name": name, "id": str(series.metric_id)}
            info.setdefault("metrics", []).append({**entry, schema.ORIGIN: schema.SYSTEM_ORIGIN} if system else entry)
        with self._lock:
            records = series.records(steps, values, stamps, self._next_seq)
        for rec in records:
            self._submit_record(rec)

    def _metric_rollups(self) -> dict[str, Any]:
        """The run field holding every user series' roll-ups (min, max, mean, first, last and their steps); the
        observer's own series are summed up in ``system`` instead."""
        with self._lock:
            rollups = {schema.rollup_key(name): dict(series.rollup) for name, series in self._series.items()
                       if series.rollup}
        return {schema.METRIC_ROLLUPS_FIELD: rollups} if rollups else {}

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    @_never_raises
    def resource_event(self, filename):  # noqa: ANN001
        """Record a file the run opened (stored once per content) and list it as ``[path, md5]``."""
        if self._not_recording("resource_event"):
            return
        md5 = get_digest(filename)
        with self._lock:
            entry = [filename, md5]
            if entry in self._resources:
                return
            self._submit("file", kind="resource", file_id=schema.new_object_id(),
                         path=os.path.abspath(filename), md5=md5, **self.recorder.spool(filename))
            self._resources.append(entry)
            self._submit("update_run", fields={"resources": list(self._resources)})

    @_never_raises
    def artifact_event(self, name, filename, metadata=None, content_type=None):  # noqa: ANN001
        """Record an artifact (a copy is kept until it is in GridFS) and list it in ``artifacts``."""
        if self._not_recording("artifact_event"):
            return
        if content_type is None:
            content_type = mimetypes.guess_type(os.fspath(filename))[0]
        self._record_artifact(name, self.recorder.spool(filename), content_type, schema.bson_safe(metadata))

    def _record_artifact(self, name: str, where: dict[str, str], content_type: str | None, metadata: Any) -> None:
        """``where``: the file record's ``spooled`` or ``original`` field (see :meth:`Recorder.spool`)."""
        file_id = schema.new_object_id()
        with self._lock:
            self._submit("file", kind="artifact", file_id=file_id, **where, name=name,
                         content_type=content_type, metadata=metadata)
            self._artifacts.append({"name": name, "file_id": file_id})
            self._submit("update_run", fields={"artifacts": list(self._artifacts)})

    # -- end ------------------------------------------------------------------------------------------------------
    def _finish(self, fields: dict[str, Any]) -> None:
        """End the run with ``fields`` (status, stop time, result or fail trace) once Sacred's last heartbeat is in.

        Sacred stops its heartbeat thread but waits only 2 s for its last beat, which carries every point logged since
        the beat before and the output's tail. The training thread waits for that beat at most ``flush_timeout``
        seconds, then for MongoDB at most ``flush_timeout`` seconds; a beat still on its way then is recorded when it
        arrives, and the run's end with it, by a thread of ours that the process waits for (as it waits for Sacred's
        heartbeat thread).
        """
        self._gc.stop()
        if self.recorder is None:
            return
        beat = self._heartbeat_thread()
        try:
            if beat is not None:
                beat.join(self.flush_timeout)
            if beat is not None and beat.is_alive():
                logger.warning("sacred-gpu: the last heartbeat of run %s is still on its way after %g s; the run's end "
                               "is recorded as soon as it arrives (the process waits for it)", self.run_id,
                               self.flush_timeout)
                self._finisher = threading.Thread(target=self._finish_after, args=(beat, fields),
                                                  name="sacred-gpu-finish")
                self._finisher.start()
                return
            self._record_end(fields)
        except KeyboardInterrupt:  # Ctrl-C again while the run ends: record its end without waiting, then stop
            monitor, self.monitor = self.monitor, None
            if monitor is not None:
                monitor.stop_now()
            logger.warning("sacred-gpu: interrupted while ending run %s; its end is journaled without the last "
                           "points (`sacred-gpu sync %s` uploads what MongoDB did not get)", self.run_id,
                           self.recorder.journal.folder.parent)
            self._update_run(fields)
            self._close(timeout=0.0)
            raise

    def _finish_after(self, beat: threading.Thread, fields: dict[str, Any]) -> None:
        """On our own thread: wait for Sacred's late last beat, then record the run's end."""
        try:
            beat.join()
            self._record_end(fields)
        except Exception as exc:  # noqa: BLE001 - nothing to raise to
            self._report_failure("recording the end of the run", exc)

    def _record_end(self, fields: dict[str, Any]) -> None:
        """Stop sampling, submit the closing records and the final fields, and close the run's journal."""
        final = self._final_fields()
        final.update(self._metric_rollups())
        final.update(fields)
        with self._lock:
            closing = [rec for series in self._series.values() for rec in series.closing_records(self._next_seq)]
        for rec in closing:
            self._submit_record(rec)
        if self.output_artifact and self._output:
            spooled = self.recorder.journal.spool_text(self._output)  # type: ignore[union-attr]
            self._record_artifact("captured_out.txt", {"spooled": spooled}, "text/plain", None)
        self._update_run(final)
        self._close()

    def _heartbeat_thread(self) -> threading.Thread | None:
        """Sacred's heartbeat thread of this run, if it may still deliver a beat: the thread our ``log_metrics`` was
        called on, else the ``Run`` that is ending it (a run shorter than one beat interval has had no beat yet)."""
        beat = self._beat_thread
        if beat is None:
            frame = sys._getframe(1)
            while frame is not None and beat is None:
                owner = frame.f_locals.get("self")
                if isinstance(owner, sacred.run.Run):
                    beat = getattr(owner, "_heartbeat", None)
                frame = frame.f_back
        return beat if isinstance(beat, threading.Thread) and beat is not threading.current_thread() else None

    def _close(self, timeout: float | None = None) -> None:
        """Write what is pending within ``timeout`` (default ``flush_timeout``) seconds; what is left waits in the
        journal for ``sacred-gpu sync``."""
        recorder, self.recorder = self.recorder, None
        self._own_lines.detach()
        if recorder is None:
            return
        self._ended = True
        if recorder.close(self.flush_timeout if timeout is None else timeout):
            return
        reason = "it is recorded offline" if recorder.offline else f"MongoDB at {self.where} did not take it in time"
        logger.warning("sacred-gpu: run %s is kept in %s (%s); upload it with `sacred-gpu sync %s`",
                       self.run_id, recorder.journal.folder, reason, recorder.journal.folder.parent)

    @_never_raises
    def completed_event(self, stop_time, result):  # noqa: ANN001
        self._finish({"stop_time": stop_time, "result": schema.flatten(result), "status": schema.COMPLETED})

    @_never_raises
    def interrupted_event(self, interrupt_time, status):  # noqa: ANN001
        """INTERRUPTED, or the status of the ``SacredInterrupt`` raised (e.g. TIMEOUT)."""
        self._finish({"stop_time": interrupt_time, "status": status})

    @_never_raises
    def failed_event(self, fail_time, fail_trace):  # noqa: ANN001
        self._finish({"stop_time": fail_time, "status": schema.FAILED, "fail_trace": schema.bson_safe(fail_trace)})

    def join(self) -> None:
        """Called by Sacred when the run has ended: the final event already flushed (or journaled) everything."""


@cli_option("-g", "--gpu_mongo")
def gpu_mongo_option(args: str, run: Any) -> None:
    """Add a GpuMongoObserver (sacred-gpu) to the run.

    The value is a database spec, `[host:port:]db_name[!priority]`, or a `mongodb://` URI.
    """
    spec = connection.parse_mongo_spec(args)
    kwargs: dict[str, Any] = {"url": spec.url, "db_name": spec.db_name}
    if spec.priority is not None:
        kwargs["priority"] = spec.priority
    run.observers.append(GpuMongoObserver(**kwargs))
