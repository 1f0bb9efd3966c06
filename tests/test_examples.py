"""The examples train real models and are recorded through the observer; the demo command runs them."""

from __future__ import annotations

import pickle

import gridfs

from sacred_gpu import GpuMongoObserver, cli
from sacred_gpu.demo import load_example
from sacred_gpu.sampling.fake_nvml import FakeNvml


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
    assert {m["name"] for m in doc["info"]["metrics"]} == {"train_loss", "val_loss", "val_acc"}
    assert "epoch  12/12" in doc["captured_out"]
    checkpoints = [a for a in doc["artifacts"] if a["name"] == "model.pkl"]
    assert len(checkpoints) == 3  # epochs 5, 10 and the final 12
    stored = gridfs.GridFS(db).get(checkpoints[-1]["file_id"])
    assert stored.metadata == {"epoch": 12}
    checkpoint = pickle.loads(stored.read())
    digits = __import__("sklearn.datasets", fromlist=["load_digits"]).load_digits()
    accuracy = (checkpoint["model"].predict(checkpoint["scaler"].transform(digits.data)) == digits.target).mean()
    assert accuracy > 0.85


def test_demo_command_records_and_summarises_the_examples(capsys):
    assert cli.main(["demo", "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    summary = out[out.index("Recorded in an in-memory MongoDB"):].splitlines()
    assert len([line for line in summary if "COMPLETED" in line]) == 3
    assert all("val_acc (3)" in line for line in summary if "COMPLETED" in line)


def test_notebook_example_runs_end_to_end():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent.parent / "examples" / "query_runs.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "val_loss.min_step" in done.stdout and "recorded by examples/query_runs.py" in done.stdout
    assert "sys/proc/rss_mib" in done.stdout  # the runs were long enough to be sampled
