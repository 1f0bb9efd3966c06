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


def _printed_by(handler, emit):
    """What ``handler`` (on the root logger, as Sacred's is) printed while ``emit()`` ran, and an attached OwnLines."""
    import io
    import logging

    from sacred_gpu.record.own_lines import OwnLines

    stream = io.StringIO()
    handler.setStream(stream)
    root = logging.getLogger()
    own = OwnLines()
    root.addHandler(handler)
    own.attach()
    try:
        emit()
    finally:
        own.detach()
        root.removeHandler(handler)
    return stream.getvalue(), own


def test_a_users_line_sharing_a_line_with_ours_is_kept_whole():
    """stdout and stderr reach Sacred's capture through two ``tee`` processes: a user's line whose newline had not
    been written yet shares its line with our record. Only our record's text leaves; the user's text stays whole (it
    was lost with the whole line once, found by a suite run)."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s - %(name)s - %(message)s"))

    def emit():
        try:
            raise ValueError("our own failure")
        except ValueError:
            logging.getLogger("sacred_gpu.record").warning("sacred-gpu: with a traceback", exc_info=True)

    ours, own = _printed_by(handler, emit)
    assert ours.startswith("WARNING - sacred_gpu.record - sacred-gpu: with a traceback\nTraceback")
    output = "hello from main\nthe user's line after ours" + ours + "\nand the next one\n"
    assert own.strip(output) == "hello from main\nthe user's line after ours\nand the next one\n"


def test_a_record_printed_differently_leaves_only_its_own_text():
    """A record whose printed text is not found whole (a formatter that prints something new each time) has its
    message lines and traceback removed, and nothing around them."""
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours, own = _printed_by(handler, lambda: logging.getLogger("sacred_gpu").warning("sacred-gpu: a\ntwo-line one"))
    assert ours == "sacred-gpu: a\ntwo-line one\n"
    output = "user text [12:00:01] sacred-gpu: a\ntwo-line one\nmore user text\n"
    assert own.strip(output) == "user text [12:00:01] more user text\n"
    assert own.strip("nothing of ours\n") == "nothing of ours\n"
