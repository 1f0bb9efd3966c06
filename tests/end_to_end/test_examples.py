"""The examples train real models and are recorded through the observer; the demo command runs them."""

from __future__ import annotations

import pickle

import gridfs
import pytest

from dashboard.demo.examples import load_example
from sacred_gpu import GpuMongoObserver, cli
from sacred_gpu.testing.fake_nvml import FakeNvml


def test_digits_example_trains_and_records_a_checkpoint(client, db):
    ex = load_example("train_digits.py").ex
    ex.observers[:] = [GpuMongoObserver(client=client, nvml=FakeNvml([]))]
    run = ex.run(config_updates={"epochs": 12, "checkpoint_every": 5},
                 options={"--beat-interval": 0.2, "--capture": "sys"})
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED" and doc["experiment"]["name"] == "train_digits"
    assert doc["result"] > 0.85  # a real model learned the digits
    val_acc = db.metrics.find_one({"run_id": run._id, "name": "val_acc"})
    assert val_acc["steps"] == list(range(1, 13)) and val_acc["values"][-1] == doc["result"]
    own = {m["name"] for m in doc["info"]["metrics"] if not m["name"].startswith("sys/")}  # sys/: if sampled
    assert own == {"train_loss", "val_loss", "val_acc"}
    assert "epoch  12/12" in doc["captured_out"]
    checkpoints = [a for a in doc["artifacts"] if a["name"] == "model.pkl"]
    assert len(checkpoints) == 3  # epochs 5, 10 and the final 12
    stored = gridfs.GridFS(db).get(checkpoints[-1]["file_id"])
    assert stored.metadata == {"epoch": 12}
    checkpoint = pickle.loads(stored.read())
    digits = __import__("sklearn.datasets", fromlist=["load_digits"]).load_digits()
    accuracy = (checkpoint["model"].predict(checkpoint["scaler"].transform(digits.data)) == digits.target).mean()
    assert accuracy > 0.85


def test_diabetes_example_fits_a_regressor_and_saves_it(client, db):
    ex = load_example("train_diabetes.py").ex
    ex.observers[:] = [GpuMongoObserver(client=client, nvml=FakeNvml([]))]
    run = ex.run(config_updates={"epochs": 60, "seed": 2}, options={"--beat-interval": 0.2, "--capture": "sys"})
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED" and doc["experiment"]["name"] == "train_diabetes"
    assert doc["result"] > 0.3  # R² of a real fit on held-out patients (a constant predicts 0)
    val_r2 = db.metrics.find_one({"run_id": run._id, "name": "val_r2"})
    assert val_r2["steps"] == list(range(1, 61)) and val_r2["values"][-1] == doc["result"]
    own = {m["name"] for m in doc["info"]["metrics"] if not m["name"].startswith("sys/")}
    assert own == {"train_rmse", "val_rmse", "val_mae", "val_r2"}
    stored = gridfs.GridFS(db).get(doc["artifacts"][-1]["file_id"])
    fitted = pickle.loads(stored.read())
    data = __import__("sklearn.datasets", fromlist=["load_diabetes"]).load_diabetes()
    predicted = fitted["model"].predict(fitted["x_scaler"].transform(data.data)) * fitted["y_std"] + fitted["y_mean"]
    assert abs(predicted.mean() - data.target.mean()) < 20  # in the target's units, not standardised ones


def test_digits_example_stops_a_diverging_run(client, db):
    ex = load_example("train_digits.py").ex
    ex.observers[:] = [GpuMongoObserver(client=client, sampling=False)]
    with pytest.raises(RuntimeError, match="exceeds max_loss 10.0: the training diverged"):
        ex.run(config_updates={"epochs": 5, "learning_rate": 10.0}, options={"--capture": "sys"})
    doc = db.runs.find_one()
    assert doc["status"] == "FAILED" and "TrainingDiverged" in doc["fail_trace"][-1]


def test_demo_command_records_and_summarises_the_examples(capsys):
    assert cli.main(["demo", "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    summary = out[out.index("Recorded in an in-memory MongoDB"):].splitlines()[2:]
    statuses = sorted(line.split()[1] for line in summary)
    assert statuses == sorted(["COMPLETED"] * 5 + ["FAILED", "QUEUED", "RUNNING", "INTERRUPTED"])
    completed = [line for line in summary if "COMPLETED" in line]
    assert sum("train_digits" in line and "val_acc (3)" in line and "model.pkl" in line for line in completed) == 3
    assert sum("train_diabetes" in line and "val_r2 (3)" in line for line in completed) == 2
    assert any("FAILED" in line and "TrainingDiverged" in line for line in summary)
    assert any("RUNNING" in line and "last heartbeat" in line for line in summary)


def test_notebook_example_runs_end_to_end():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[2] / "examples" / "query_runs.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "val_loss.min_step" in done.stdout and "recorded by examples/query_runs.py" in done.stdout
    assert "sys/proc/rss_mib" in done.stdout  # the runs were long enough to be sampled
