"""``GpuMongoObserver``: turns Sacred's run events into records; the recorder journals them and writes them."""

from __future__ import annotations

import functools
import logging
import mimetypes
import os
import threading
from typing import Any, Callable, TypeVar

from pathlib import Path

from pymongo.errors import DuplicateKeyError, PyMongoError
from sacred.commandline_options import cli_option
from sacred.dependencies import get_digest
from sacred.observers.base import RunObserver
from sacred.utils import ObserverError

from sacred_gpu import connection, schema
from sacred_gpu.gc_freeze import GcFreeze
from sacred_gpu.journal import default_spool
from sacred_gpu.recorder import DEFAULT_FLUSH_TIMEOUT, Recorder, offline_from_environment, open_recorder
from sacred_gpu.sampling.catalog import PREFIX as SYSTEM_PREFIX
from sacred_gpu.sampling.gpu import gpu_inventory
from sacred_gpu.sampling.monitor import SystemMonitor, Window
from sacred_gpu.series import MetricSeries
from sacred_gpu.writer import MongoWriter, record

logger = logging.getLogger(__name__)

#: Sacred's default priority for its MongoObserver.
DEFAULT_PRIORITY = 30
#: Seconds the end of a run waits for a heartbeat still being recorded.
HEARTBEAT_WAIT = 60.0

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
    ``output_cap``: characters of captured output kept in the run document (head and tail);
    ``output_artifact``: also store the whole captured output as the artifact ``captured_out.txt`` at the end;
    ``freeze_gc``: leave the objects alive at the start of the run out of CPython's garbage collections until its
    end (``gc.freeze``), which cuts the collector's pauses in the training loop (see ``sacred_gpu.gc_freeze``);
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
        output_cap: int = schema.OUTPUT_CAP,
        output_artifact: bool = False,
        freeze_gc: bool = True,
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
        self.spool_dir = Path(spool_dir) if spool_dir is not None else default_spool()
        self.where = connection.describe(url if client is None else type(client).__name__, db_name)
        self.target = {"url": url, "db_name": db_name, "prefix": collection_prefix}
        self._client = connection.open_client(url, client, **client_kwargs)
        self.writer = MongoWriter(self._client[db_name], schema.Collections(collection_prefix))
        self._nvml = nvml
        self.freeze_gc, self._gc = freeze_gc, GcFreeze()
        self._lock = threading.Lock()
        self._beat_thread: threading.Thread | None = None  # Sacred's heartbeat thread, seen in log_metrics
        self._reported: set[str] = set()
        self._reset()

    def __repr__(self) -> str:
        return f"GpuMongoObserver({self.where})"

    # -- state of the current run ---------------------------------------------------------------------------------
    def _reset(self) -> None:
        self.run_id: Any = None
        self.recorder: Recorder | None = None
        self.monitor: SystemMonitor | None = None
        self._info: dict[str, Any] | None = None
        self._output = ""
        self._beat_thread = None
        self._inventory: list[dict[str, Any]] = []
        self._series: dict[str, MetricSeries] = {}
        self._seq = 0
        self._artifacts: list[dict[str, Any]] = []
        self._resources: list[list[str]] = []

    def _report_failure(self, event: str, exc: BaseException) -> None:
        """Log a failed event: the first of each kind as a WARNING with its traceback, repeats at DEBUG."""
        if event in self._reported:
            logger.debug("sacred-gpu: %s failed again for run %s: %s", event, self.run_id, exc)
            return
        self._reported.add(event)
        logger.warning(
            "sacred-gpu: %s failed for run %s (%s): %s; the run goes on",
            event, self.run_id, self.where, exc, exc_info=True,
        )

    def _submit(self, op: str, **fields: Any) -> None:
        assert self.recorder is not None
        self.recorder.submit(record(op, **fields))

    # -- start ----------------------------------------------------------------------------------------------------
    def _begin(self, ex_info: dict, command: str, host_info: dict, config: dict, meta_info: dict,
               fields: dict[str, Any], _id: Any) -> Any:
        """Insert the run document and open the run's journal: online, or offline when MongoDB cannot be reached.

        Online, the sources and the run document are written before the run starts (so the id is MongoDB's);
        offline, they are journaled like every later record and written by ``sacred-gpu sync``.
        """
        self._reset()
        sources = [(name, os.path.abspath(os.path.join(ex_info["base_dir"], name)), md5)
                   for name, md5 in ex_info.get("sources", [])]
        host = schema.bson_safe(dict(host_info))
        host["gpu_inventory"] = self._inventory = gpu_inventory(self._nvml)
        doc = {"experiment": schema.bson_safe(dict(ex_info)), "command": command, "host": host,
               "config": schema.flatten(config), "meta": schema.bson_safe(meta_info), **fields}
        reason = "offline mode was asked for"
        if not self.offline:
            try:
                self.writer.ensure_indexes()
                doc["experiment"]["sources"] = [[name, self.writer.put_deduplicated(path, md5)]
                                                for name, path, md5 in sources]
                self.run_id = self.writer.insert_run(dict(doc, _id=_id) if _id is not None else doc)
                self.recorder = open_recorder(self.writer, self.spool_dir, self.target, self.run_id)
            except DuplicateKeyError as exc:
                raise ObserverError(f"sacred-gpu: run id {_id!r} is already taken in {self.where}") from exc
            except PyMongoError as exc:
                reason = f"MongoDB at {self.where} cannot be reached: {connection.short_error(exc)}"
        if self.recorder is None:
            self.recorder = open_recorder(None, self.spool_dir, self.target, _id, reason=reason)
            self.run_id = self.recorder.run_id
            doc["experiment"]["sources"] = []
            for name, path, md5 in sources:
                file_id = schema.new_object_id()
                self._submit("file", kind="source", file_id=file_id, spooled=self.recorder.spool(path), path=path,
                             md5=md5)
                doc["experiment"]["sources"].append([name, file_id])
            self._submit("insert_run", doc=doc)
        self.recorder.start()
        return self.run_id

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
                self._append_series(name, [step], [value], [stamp], info)
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
        self._info, self._output = info, captured_out
        fields = self._record_window(self.monitor.window() if self.monitor else None, info)
        fields.update(
            {
                **self._metric_rollups(),
                "info": schema.flatten(info),
                "captured_out": schema.cap_output(captured_out, self.output_cap),
                "heartbeat": beat_time,
                "result": schema.flatten(result),
            }
        )
        self._submit("update_run", fields=fields)

    @_never_raises
    def log_metrics(self, metrics_by_name, info):  # noqa: ANN001
        """Record the points logged since the last heartbeat; reference new series in ``info["metrics"]``."""
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

    def _append_series(self, name: str, steps: list, values: list, stamps: list, info: dict[str, Any]) -> None:
        """Append to the run's series ``name``; a new series is referenced in ``info["metrics"]`` as Sacred does."""
        series = self._series.get(name)
        if series is None:
            # system series are already bounded by their window thinning; user series are capped here
            series = self._series[name] = MetricSeries(name, schema.new_object_id(),
                                                       capped=not name.startswith(SYSTEM_PREFIX))
            info.setdefault("metrics", []).append({"name": name, "id": str(series.metric_id)})
        with self._lock:
            records = series.records(steps, values, stamps, self._next_seq)
        for rec in records:
            assert self.recorder is not None
            self.recorder.submit(rec)

    def _metric_rollups(self) -> dict[str, Any]:
        """The run fields holding every series' roll-ups (min, max, mean, first, last and their steps)."""
        with self._lock:
            rollups = {schema.bson_key(name): dict(series.rollup) for name, series in self._series.items()
                       if series.rollup}
        return {schema.METRIC_ROLLUPS_FIELD: rollups} if rollups else {}

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    @_never_raises
    def resource_event(self, filename):  # noqa: ANN001
        """Record a file the run opened (stored once per content) and list it as ``[path, md5]``."""
        md5 = get_digest(filename)
        with self._lock:
            entry = [filename, md5]
            if entry in self._resources:
                return
            assert self.recorder is not None
            self._submit("file", kind="resource", file_id=schema.new_object_id(),
                         spooled=self.recorder.spool(filename), path=os.path.abspath(filename), md5=md5)
            self._resources.append(entry)
            self._submit("update_run", fields={"resources": list(self._resources)})

    @_never_raises
    def artifact_event(self, name, filename, metadata=None, content_type=None):  # noqa: ANN001
        """Record an artifact (a copy is kept until it is in GridFS) and list it in ``artifacts``."""
        if content_type is None:
            content_type = mimetypes.guess_type(os.fspath(filename))[0]
        assert self.recorder is not None
        self._record_artifact(name, self.recorder.spool(filename), content_type, schema.bson_safe(metadata))

    def _record_artifact(self, name: str, spooled: str, content_type: str | None, metadata: Any) -> None:
        file_id = schema.new_object_id()
        with self._lock:
            self._submit("file", kind="artifact", file_id=file_id, spooled=spooled, name=name,
                         content_type=content_type, metadata=metadata)
            self._artifacts.append({"name": name, "file_id": file_id})
            self._submit("update_run", fields={"artifacts": list(self._artifacts)})

    # -- end ------------------------------------------------------------------------------------------------------
    def _finish(self, fields: dict[str, Any]) -> None:
        self._gc.stop()
        try:
            self._await_last_beat()
            final = self._final_fields()
        except KeyboardInterrupt:  # Ctrl-C again while the run ends: record its end without waiting, then stop
            monitor, self.monitor = self.monitor, None
            if monitor is not None:
                monitor.stop_now()
            logger.warning("sacred-gpu: interrupted while ending run %s; its end is journaled without the last "
                           "points (`sacred-gpu sync %s` uploads what MongoDB did not get)", self.run_id,
                           self.spool_dir)
            self._submit("update_run", fields=fields)
            raise
        final.update(self._metric_rollups())
        final.update(fields)
        with self._lock:
            closing = [rec for series in self._series.values() for rec in series.closing_records(self._next_seq)]
        for rec in closing:
            self.recorder.submit(rec)  # type: ignore[union-attr]
        if self.output_artifact and self._output:
            spooled = self.recorder.journal.spool_text(self._output)  # type: ignore[union-attr]
            self._record_artifact("captured_out.txt", spooled, "text/plain", None)
        self._submit("update_run", fields=final)
        self._close()

    def _await_last_beat(self) -> None:
        """Sacred has stopped its heartbeat thread but waits only 2 s for its last beat; a long one (a huge backlog
        of points) must be recorded before the run is closed."""
        beat = self._beat_thread
        if beat is not None and beat is not threading.current_thread():
            beat.join(HEARTBEAT_WAIT)
            if beat.is_alive():
                logger.warning("sacred-gpu: the last heartbeat of run %s did not end within %.0f s", self.run_id,
                               HEARTBEAT_WAIT)

    def _close(self) -> None:
        """Write what is pending within ``flush_timeout``; what is left waits in the journal for ``sacred-gpu sync``."""
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return
        if recorder.close(self.flush_timeout):
            return
        reason = "it is recorded offline" if recorder.offline else f"MongoDB at {self.where} did not take it in time"
        logger.warning("sacred-gpu: run %s is kept in %s (%s); upload it with `sacred-gpu sync %s`",
                       self.run_id, recorder.journal.folder, reason, self.spool_dir)

    @_never_raises
    def completed_event(self, stop_time, result):  # noqa: ANN001
        self._finish({"stop_time": stop_time, "result": schema.flatten(result), "status": schema.COMPLETED})

    @_never_raises
    def interrupted_event(self, interrupt_time, status):  # noqa: ANN001
        """INTERRUPTED, or the status of the ``SacredInterrupt`` raised (e.g. TIMEOUT)."""
        self._finish({"stop_time": interrupt_time, "status": status})

    @_never_raises
    def failed_event(self, fail_time, fail_trace):  # noqa: ANN001
        self._finish({"stop_time": fail_time, "status": schema.FAILED, "fail_trace": fail_trace})

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
