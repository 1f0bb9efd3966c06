"""What a run printed before it failed is stored (issue 15, item 13).

Sacred reads its capture at each heartbeat only. A run that fails (or is interrupted) ends its capture with the
exception: the capture's last text is set aside and closed, and the final heartbeat finds it closed, so no observer
is handed what was printed since the last beat. A run failing at once had printed two lines and its page said "no
output captured". The observer takes that last text from Sacred's capture itself at the run's end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from sacred.utils import apply_backspaces_and_linefeeds

from sacred_gpu import GpuMongoObserver
from sacred_gpu.testing.fake_nvml import FakeNvml
from tests.support.experiments import run_experiment

SCRIPT = """
import json, sys
import mongomock
from sacred import Experiment
from sacred_gpu import GpuMongoObserver
from sacred_gpu.testing.fake_nvml import FakeNvml

client = mongomock.MongoClient()
ex = Experiment("fails_at_once", save_git_info=False)
ex.observers.append(GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False))

@ex.main
def main():
    print("loading the data")
    print("building the model")
    raise {error}("out of memory")

try:
    ex.run_commandline(["fails_at_once.py", *sys.argv[1:]])
finally:
    doc = client["sacred"].runs.find_one()
    sys.__stdout__.write("\\n" + json.dumps({{"status": doc["status"], "captured_out": doc["captured_out"]}}))
"""


def run_script(tmp_path, error: str, *options: str) -> dict:
    """Run :data:`SCRIPT` as a user runs a Sacred script (its own process, Sacred's command line); the stored run."""
    script = tmp_path / "fails_at_once.py"
    script.write_text(SCRIPT.format(error=error))
    done = subprocess.run([sys.executable, str(script), *options], check=False, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env={**os.environ, "SACRED_GPU_SPOOL": str(tmp_path / "spool")})
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("options", [[], ["--capture=fd"], ["--capture=sys"]], ids=["default", "fd", "sys"])
def test_a_run_failing_at_once_keeps_the_lines_it_printed(tmp_path, options):
    doc = run_script(tmp_path, "MemoryError", *options)
    assert doc["status"] == "FAILED"
    assert "loading the data\nbuilding the model\n" in doc["captured_out"]


def test_an_interrupted_run_keeps_the_lines_it_printed(tmp_path):
    doc = run_script(tmp_path, "KeyboardInterrupt")
    assert doc["status"] == "INTERRUPTED"
    assert "loading the data\nbuilding the model\n" in doc["captured_out"]


def test_the_last_lines_after_earlier_beats_are_kept_with_sacreds_output_filter(client, db):
    """Beats handed the first lines; the lines after the last beat are added, through the run's output filter."""
    watcher = GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False)

    def main(_run):
        _run.captured_out_filter = apply_backspaces_and_linefeeds
        print("epoch 0")
        time.sleep(0.3)  # a few beats (every 0.05 s) hand "epoch 0" to the observer
        print("progress 10%\rprogress 100%")
        raise ValueError("diverged")

    with pytest.raises(ValueError):
        run_experiment(main, watcher)
    doc = db.runs.find_one({"_id": watcher.run_id})
    assert doc["status"] == "FAILED"
    assert doc["captured_out"].count("epoch 0") == 1 and "progress 100%\n" in doc["captured_out"]
    assert "progress 10%" not in doc["captured_out"]
