"""The demo's simulated GPUs (``dashboard/demo/simulated.py``): the phases of a training job, an idle GPU, a curve
per run drawn from its seed."""

from __future__ import annotations

import numpy as np

from dashboard.demo import simulated
from sacred_gpu.testing.fake_gpus import Workload


def readings(workload: Workload, seconds: float = 30.0, step: float = 0.1) -> dict[str, np.ndarray]:
    """A simulated GPU's readings under ``workload``, every ``step`` s from 0 to ``seconds``."""
    gpu, rows = simulated.simulated_gpus()[0], []
    for t in np.arange(0.0, seconds, step):
        workload.apply(gpu, float(t), pid=1)
        rows.append((t, workload.phase(float(t)), gpu.util_pct, gpu.memory_used_bytes, gpu.power_mw, gpu.temp_c,
                     len(gpu.processes)))
    columns = list(zip(*rows))
    return dict(zip(["t", "phase", "util", "memory", "power", "temp", "processes"], map(np.array, columns)))


def test_simulated_gpus_follow_the_phases_of_a_training_job():
    workload = Workload.for_run(7, 0.9)
    seen = readings(workload)
    phase, util, power = seen["phase"], seen["util"], seen["power"]
    assert {"starting", "loading", "training", "evaluating"} == set(phase)
    plateau = util[phase == "training"]
    assert plateau.min() > 60 and util[phase == "loading"].max() < 0.3 * plateau.min()  # data loading dips
    assert 0.3 * plateau.mean() < util[phase == "evaluating"].mean() < 0.7 * plateau.mean()  # evaluation dips
    ramp = seen["memory"][phase == "starting"]
    assert ramp[0] < ramp[-1] and (np.diff(ramp) >= 0).all()  # allocations ramp up, then hold
    assert seen["memory"][phase == "training"].min() >= ramp[-1] * 0.9
    assert np.corrcoef(util, power)[0, 1] > 0.95  # power follows utilization
    temp, lagged = seen["temp"].astype(float), power.astype(float).copy()
    for i in range(1, len(lagged)):  # power through a first-order lag of the workload's lag_s
        lagged[i] = lagged[i - 1] + (power[i] - lagged[i - 1]) * (1 - np.exp(-0.1 / workload.lag_s))
    assert np.corrcoef(temp, lagged)[0, 1] > 0.95 > np.corrcoef(temp, power)[0, 1] + 0.2  # temperature lags power
    assert temp[phase == "starting"].max() < temp[-50:].min()  # and climbs over the run
    assert (seen["processes"] == 1).all()


def test_idle_simulated_gpu_stays_idle():
    seen = readings(Workload.for_run(7, 0.0), seconds=5)
    assert not seen["util"].any() and not seen["memory"].any() and not seen["processes"].any()
    assert len(set(seen["temp"])) == 1 and seen["power"].max() < 80_000


def test_runs_draw_different_gpu_curves():
    first, second = readings(Workload.for_run(1, 0.9)), readings(Workload.for_run(2, 0.9))
    assert not np.array_equal(first["util"], second["util"]) and not np.array_equal(first["temp"], second["temp"])
    same = readings(Workload.for_run(1, 0.9))
    assert np.array_equal(first["util"], same["util"])  # drawn from the seed, not from the clock
