"""Real Sacred runs for the record side's tests: our observer without sampling, runs that log and train, what
reached MongoDB."""

from __future__ import annotations

import time
from pathlib import Path

from sacred_gpu import GpuMongoObserver
from sacred_gpu.testing.fake_nvml import FakeNvml

STEPS = 300


def observer(client, **kwargs) -> GpuMongoObserver:
    return GpuMongoObserver(client=client, nvml=FakeNvml([]), **{"sampling": False, **kwargs})


def logging_steps(steps: int = STEPS, pause: float = 0.0005, hook=None):
    """A run that logs ``loss`` at every step, a heartbeat's worth of points per record."""

    def main(_run):
        for step in range(steps):
            _run.log_scalar("loss", float(step), step)
            if hook:
                hook(step)
            time.sleep(pause)
        return "done"

    return main


def stored_steps(db, run_id, name: str = "loss") -> list[int]:
    return [step for doc in db.metrics.find({"run_id": run_id, "name": name}) for step in doc["steps"]]


def training(tmp: Path, steps: int = 30, pause: float = 0.0, hook=None):
    """A run that logs metrics, info, an artifact, a resource and output."""

    def main(_run):
        (tmp / "weights.bin").write_bytes(b"w" * 1000)
        (tmp / "data.csv").write_text("a,b\n1,2\n")
        _run.open_resource(str(tmp / "data.csv")).close()
        for step in range(steps):
            _run.log_scalar("loss", 1.0 / (step + 1), step)
            _run.log_scalar("acc", step / steps, step)
            if hook:
                hook(step)
            time.sleep(pause)
        _run.info["best"] = {"loss": 1.0 / steps}
        _run.add_artifact(str(tmp / "weights.bin"), metadata={"epoch": steps})
        print("finished training")
        return 0.5

    return main


def wait_for(condition, what: str, seconds: float = 10.0, every: float = 0.02):
    """``condition()``'s first truthy value, asked every ``every`` seconds; an AssertionError after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds:g} s"
        time.sleep(every)
    return value


LIMIT = 16 * 1024 * 1024


def until_sampled(run, samples: int = 6, timeout: float = 30.0) -> None:
    """Wait until every sampling observer of Sacred's ``run`` has taken ``samples`` samples (at most ``timeout``
    seconds). A sampler's thread probes its devices before its first sample, which takes longer on a busy machine:
    a run that slept a fixed time got as few as two samples."""
    deadline = time.monotonic() + timeout
    monitors = [obs.monitor for obs in run.observers if getattr(obs, "monitor", None) is not None]
    while any(monitor.sampler.ticks < samples for monitor in monitors) and time.monotonic() < deadline:
        time.sleep(0.01)
