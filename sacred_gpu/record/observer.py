"""``GpuMongoObserver``: turns Sacred's run events into records; the recorder journals them and writes them.

The class is read in four parts: this module (the events, the run's state, files), :mod:`.run_start` (how a run
starts), :mod:`.run_records` (metric points and system windows) and :mod:`.run_end` (how a run ends).
"""

from __future__ import annotations

import logging
import mimetypes
import os
import threading
import uuid
from pathlib import Path
from typing import Any

from bson import ObjectId
from sacred.commandline_options import cli_option
from sacred.dependencies import get_digest
from sacred.observers.base import RunObserver

from sacred_gpu import connection, schema
from sacred_gpu.record.gc_freeze import GcFreeze
from sacred_gpu.record.guards import never_raises
from sacred_gpu.record.metric_records import MetricSeries
from sacred_gpu.record.own_lines import OwnLines
from sacred_gpu.record.recorder import (
    DEFAULT_FLUSH_TIMEOUT,
    Recorder,
    offline_from_environment,
)
from sacred_gpu.record.run_end import RunEnd
from sacred_gpu.record.run_records import RunRecords
from sacred_gpu.record.run_start import RunStart
from sacred_gpu.record.spool import default_spool
from sacred_gpu.record.writer import MongoWriter, record
from sacred_gpu.sampling.devices import RunGpus
from sacred_gpu.sampling.monitor import SystemMonitor

logger = logging.getLogger(__name__)

#: Sacred's default priority for its MongoObserver.
DEFAULT_PRIORITY = 30
#: Seconds the start of a run waits for MongoDB in all before the run goes on offline.
DEFAULT_START_TIMEOUT = 5.0


class GpuMongoObserver(RunStart, RunRecords, RunEnd, RunObserver):
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
    ``nvml``: a pynvml-compatible module to read GPUs through (default ``pynvml``; ``sacred_gpu.testing.fake_nvml``
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
        self._gpus = RunGpus()  # the run's NVML session and GPUs (opened at its start)
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
            schema.SAMPLING_FIELD: {"interval_s": self.sample_interval, "slow_interval_s": self.slow_sample_interval}
            if self.sampling else None,
        }
        run_id = self._begin(ex_info, command, host_info, config, meta_info, fields, _id)
        if self.recorder is None:  # not recorded: nothing to sample for
            return run_id
        if self.freeze_gc:
            self._gc.start()
        self._start_monitor()
        return run_id

    # -- during the run -------------------------------------------------------------------------------------------
    @never_raises
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
                "result": schema.decoded(schema.flatten(result)),
            }
        )
        self._update_run(fields)

    @never_raises
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

    @never_raises
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

    @never_raises
    def completed_event(self, stop_time, result):  # noqa: ANN001
        result = schema.decoded(schema.flatten(result))  # numpy scalars as numbers: filtered and sorted by value
        self._finish({"stop_time": stop_time, "result": result, "status": schema.COMPLETED})

    @never_raises
    def interrupted_event(self, interrupt_time, status):  # noqa: ANN001
        """INTERRUPTED, or the status of the ``SacredInterrupt`` raised (e.g. TIMEOUT)."""
        self._finish({"stop_time": interrupt_time, "status": status})

    @never_raises
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
