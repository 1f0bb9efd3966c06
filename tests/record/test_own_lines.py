"""Our log lines kept out of the run's captured output (``record/own_lines.py``)."""

from __future__ import annotations

import os

CAPTURE_FD_SCRIPT = """
import json, logging, sys, time
import mongomock
from sacred import Experiment
from sacred_gpu import GpuMongoObserver
from sacred_gpu.testing.fake_nvml import FakeNvml

client = mongomock.MongoClient()
ex = Experiment("capture_fd", save_git_info=False)
ex.observers.append(GpuMongoObserver(client=client, nvml=FakeNvml(init_error=12), sample_interval=0.05))

@ex.main
def main(_run):
    print("hello from main")
    logging.getLogger("sacred_gpu.record.observer").warning("sacred-gpu: a warning of ours\\nover two lines")
    try:
        raise ValueError("our own failure")
    except ValueError:
        logging.getLogger("sacred_gpu").warning("sacred-gpu: with a traceback", exc_info=True)
    print("the user's line after ours", flush=True)
    # Sacred's two `tee` processes copy the output to its file as they get to it: wait until all of it is there
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(_run._output_file.buffer.name) as copied:
            captured["all"] = copied.read()
        if all(part in captured["all"] for part in ("our own failure", "the user's line after ours")):
            break
        time.sleep(0.01)

captured = {}
ex.run(options={"--capture": "fd"})
sys.__stdout__.write(json.dumps([client["sacred"].runs.find_one()["captured_out"], captured["all"]]))
"""


def test_our_log_lines_stay_out_of_the_captured_output_under_capture_fd(tmp_path):
    """Under ``--capture fd`` everything on stdout/stderr is the run's output; ours (printed by the user's logging
    handler, Sacred's here) is left out of what is stored, the script's own lines and Sacred's are kept."""
    import json
    import subprocess
    import sys

    script = tmp_path / "capture_fd.py"
    script.write_text(CAPTURE_FD_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "SACRED_GPU_SPOOL": str(tmp_path / "spool")})
    assert done.returncode == 0, done.stderr
    stored, printed = json.loads(done.stdout.strip().splitlines()[-1])
    # printed as the user's logging asked (Sacred's capture saw them), then left out of what is stored
    assert "No NVIDIA GPU found" in printed and "a warning of ours" in printed and "our own failure" in printed
    assert "hello from main\n" in stored and "the user's line after ours" in stored and "Started run" in stored
    for ours in ("No NVIDIA GPU found", "a warning of ours", "over two lines", "with a traceback", "our own failure",
                 "Traceback"):
        assert ours not in stored, stored
