"""The fault matrix: real Sacred runs recorded through the wire-protocol server, each under one fault, then
``sacred-gpu sync``, and every point, sample, artifact and end status counted.

:func:`run_fault` runs one fault and returns its :class:`Outcome`; ``tests/end_to_end/test_fault_matrix.py`` asserts on the
outcomes and ``benchmarks/faults.py`` prints them. A run trains for :data:`STEPS` steps of :data:`STEP_SECONDS`,
logging ``loss`` every step and ``refusable`` every 10th, sampling two simulated GPUs, and adds one artifact.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bson
from sacred import Experiment

from sacred_gpu import GpuMongoObserver, cli
from sacred_gpu.record import journal as journal_module
from sacred_gpu.record import quarantine
from sacred_gpu.record.sync import journals
from sacred_gpu.testing.fake_nvml import FakeNvml, two_gpus
from tests.support.wire_server import WireServer

#: Seconds a run waits for MongoDB at its start, and at its end, in the matrix.
START_TIMEOUT, FLUSH_TIMEOUT = 2.0, 3.0
STEPS, STEP_SECONDS = 400, 0.005
METRICS = {"loss": 1, "refusable": 10}  # name: every how many steps it is logged
ARTIFACT = "model.bin"


@dataclass
class Trial:
    """What a fault acts on: the server, the spool, the database behind the server."""

    server: WireServer
    spool: Path
    disk: FullDisk


@dataclass
class Fault:
    """A fault: what happens ``before`` the run, at some training ``steps``, and ``after`` it (before the sync)."""

    name: str
    before: Callable[[Trial], Any] = lambda trial: None
    steps: dict[int, Callable[[Trial], Any]] = field(default_factory=dict)
    after: Callable[[Trial], Any] = lambda trial: None
    offline: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    #: the fault goes on through the sync (else the server is restored first, as a person fixes a cause)
    during_sync: bool = False
    #: what a correct outcome looks like: the run's final status, whether sync must set something aside, whether
    #: every point, sample and the artifact can be in MongoDB or the quarantine (not so when bytes are cut off)
    status: str | None = "COMPLETED"
    set_aside: bool = False
    complete: bool = True


@dataclass
class Outcome:
    """What one fault did to one run. Points and samples are counted once each; ``duplicates`` were stored twice."""

    fault: str
    logged: int
    kept: int
    duplicates: int
    quarantined: int  # logged points readable in the quarantine
    samples: int
    samples_kept: int
    artifacts_kept: int
    runs: int  # run documents in MongoDB
    status: str | None
    stall_s: float  # the longest the training thread waited: the start, or between two steps
    end_s: float  # from the last step to the end of the run (bounded by flush_timeout)
    sync_code: int
    entries: list[str]

    @property
    def missing(self) -> int:
        """Points neither in MongoDB nor readable in the quarantine."""
        return self.logged - self.kept - self.quarantined


class FullDisk:
    """The journal's segment writes on a disk with ``room`` bytes left (a write lands in part, then ENOSPC);
    ``None``: no limit."""

    def __init__(self, room: int | None = None) -> None:
        self.room = room
        self.refused = 0
        self._real = journal_module.write_all

    def free(self) -> None:
        """Space returns: every write lands again."""
        self.room = None

    def _write_all(self, fd: int, data: bytes) -> None:
        if self.room is None or not os.readlink(f"/proc/self/fd/{fd}").endswith(".log"):
            return self._real(fd, data)
        if self.room < len(data):
            if self.room:
                os.write(fd, data[: self.room])
                self.room = 0
            self.refused += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self._real(fd, data)

    @contextlib.contextmanager
    def installed(self) -> Iterator[FullDisk]:
        journal_module.write_all = self._write_all
        try:
            yield self
        finally:
            journal_module.write_all = self._real


class CountingObserver(GpuMongoObserver):
    """Our observer, counting the system samples it hands to the recorder."""

    samples = 0

    def _submit(self, op: str, **fields: Any) -> None:
        if op == "samples":
            self.samples += len(fields["samples"])
        super()._submit(op, **fields)


def _segment(trial: Trial) -> Path:
    [journal] = journals(trial.spool)
    return sorted(journal.folder.glob("*.log"))[0]


def flip_a_byte(trial: Trial) -> None:
    """Flip one byte in the middle of the journal's middle record of the run's own metric points."""
    path = _segment(trial)
    data = bytearray(path.read_bytes())
    at, metric_records = 0, []
    while at < len(data):
        length = int.from_bytes(data[at + 4:at + 8], "little")
        rec = bson.decode(bytes(data[at + 12:at + 12 + length]))
        if rec.get("op") == "metric" and rec.get("name") in METRICS:
            metric_records.append((at, length))
        at += 12 + length
    at, length = metric_records[len(metric_records) // 2]
    data[at + 12 + length // 2] ^= 0x10
    path.write_bytes(bytes(data))


def cut_at_60_percent(trial: Trial) -> None:
    path = _segment(trial)
    with open(path, "r+b") as handle:
        handle.truncate(int(path.stat().st_size * 0.6))


def _refusable(item: dict[str, Any]) -> bool:
    return "refusable" in str(item)


#: Every fault of the matrix, in the order they are reported.
FAULTS = [
    Fault("no fault"),
    Fault("connections refused at the start", before=lambda t: t.server.refuse_connections(),
          steps={100: lambda t: t.server.accept_connections()}),
    Fault("server hangs after hello", before=lambda t: t.server.hang_after_hello(),
          steps={100: lambda t: t.server.restore()}),
    Fault("server answers slowly (0.5 s)", before=lambda t: t.server.slow(0.5),
          steps={100: lambda t: t.server.restore()}),
    Fault("outage mid-run", steps={50: lambda t: t.server.refuse_connections(),
                                   250: lambda t: t.server.accept_connections()}),
    Fault("connection closed mid-batch", steps={50: lambda t: t.server.close_mid_batch(1)}),
    Fault("primary steps down", steps={50: lambda t: t.server.step_down(times=4)}),
    Fault("a metric's writes refused", before=lambda t: t.server.refuse_write("metrics", match=_refusable),
          during_sync=True, set_aside=True),
    Fault("run document refused, then accepted", before=lambda t: t.server.refuse_write("runs")),
    Fault("run document refused at sync too", before=lambda t: t.server.refuse_write("runs"), during_sync=True,
          status=None, set_aside=True),
    Fault("disk full mid-run, then freed", steps={50: lambda t: setattr(t.disk, "room", 500),
                                                  250: lambda t: setattr(t.disk, "room", None)}),
    Fault("journal byte flipped", offline=True, after=flip_a_byte, set_aside=True),
    Fault("journal cut at 60%", offline=True, after=cut_at_60_percent, status="RUNNING", set_aside=True,
          complete=False),
    Fault("config value of 20 MB", config={"blob": "b" * (20 * 1024 * 1024)}),
]


def _train(trial: Trial, fault: Fault, times: list[float]) -> Callable[..., Any]:
    def main(_run: Any) -> str:
        times.append(time.monotonic())
        for step in range(STEPS):
            if step in fault.steps:
                fault.steps[step](trial)
            for name, every in METRICS.items():
                if step % every == 0:
                    _run.log_scalar(name, float(step), step)
            time.sleep(STEP_SECONDS)
            times.append(time.monotonic())
        path = Path(tempfile.mkdtemp()) / ARTIFACT
        path.write_bytes(b"weights" * 1000)
        _run.add_artifact(str(path))
        return "trained"

    return main


def _points_in_quarantine(spool: Path) -> int:
    points = 0
    for entry in quarantine.entries(spool):
        data = entry.path.read_bytes() if entry.path.is_file() else b""
        for payload in (data, data[12:]):  # a refused record, or a damaged frame (header, then the record)
            try:
                rec = bson.decode(payload)
            except Exception:  # noqa: BLE001 - damaged beyond reading
                continue
            if rec.get("op") == "metric" and rec.get("name") in METRICS:
                points += len(rec["steps"])
            break
    return points


def run_fault(fault: Fault, workdir: Path) -> Outcome:
    """Run one fault (see the module) and count what reached MongoDB and what was set aside."""
    spool = workdir / fault.name.replace(" ", "-").replace("%", "pc") / "spool"
    disk = FullDisk()
    with WireServer() as server, disk.installed():
        trial = Trial(server, spool, disk)
        fault.before(trial)
        observer = CountingObserver(
            url=server.url, spool_dir=spool, offline=fault.offline, start_timeout=START_TIMEOUT,
            flush_timeout=FLUSH_TIMEOUT, sample_interval=0.05, slow_sample_interval=0.2, nvml=FakeNvml(two_gpus()),
            serverSelectionTimeoutMS=1000)
        ex = Experiment("fault_matrix", save_git_info=False)
        ex.add_config({"lr": 0.1, **fault.config})
        times: list[float] = []
        ex.main(_train(trial, fault, times))
        ex.observers.append(observer)
        started = time.monotonic()
        ex.run(options={"--beat-interval": 0.1, "--capture": "sys"})
        ended = time.monotonic()
        fault.after(trial)
        if not fault.during_sync:
            server.restore()
        server.accept_connections()
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(["sync", str(spool), "--mu", server.url])
        return _count(fault, server, spool, observer, code, started, times, ended)


def _count(fault: Fault, server: WireServer, spool: Path, observer: CountingObserver, code: int, started: float,
           times: list[float], ended: float) -> Outcome:
    with server.lock:
        db = server.client["sacred"]
        runs = list(db.runs.find({}, {"status": 1}))
        stored = [(m["name"], step) for m in db.metrics.find({"name": {"$in": list(METRICS)}})
                  for step in m["steps"]]
        sample_times = [doc["t"] for doc in db.system_samples.find({}, {"t": 1})]
        artifacts = db["fs.files"].count_documents({"filename": {"$regex": f"/{ARTIFACT}$"}})
    logged = sum(-(-STEPS // every) for every in METRICS.values())
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    return Outcome(
        fault=fault.name, logged=logged, kept=len(set(stored)), duplicates=len(stored) - len(set(stored)),
        quarantined=_points_in_quarantine(spool), samples=observer.samples, samples_kept=len(set(sample_times)),
        artifacts_kept=artifacts, runs=len(runs), status=runs[0]["status"] if len(runs) == 1 else None,
        stall_s=max([times[0] - started, *gaps]), end_s=ended - times[-1], sync_code=code,
        entries=[entry.describe() for entry in quarantine.entries(spool)])
