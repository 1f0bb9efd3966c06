"""Where journals live (``record/spool.py``): a spool that cannot be written, a fallback folder someone else made,
a run that changes directory; folders and files private to the user."""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

import pytest

from sacred_gpu.record.journal import Journal
from sacred_gpu.record.spool import private_fallback
from sacred_gpu.record.sync import journals
from tests.support.experiments import run_experiment
from tests.support.journals import segment_file
from tests.support.recording import logging_steps, observer


def test_no_writable_spool_anywhere_runs_to_completion_without_a_phantom_run_and_says_so_once(
        client, db, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="sacred_gpu")
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "a-file"))
    run = run_experiment(logging_steps(steps=20), observer(client, spool_dir=tmp_path / "a-file" / "spool"))
    assert run.result == "done" and run.status == "COMPLETED"
    assert db.runs.count_documents({}) == 0 and db.metrics.count_documents({}) == 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "NOT recorded" in errors[0].getMessage()


def test_a_fallback_folder_made_by_someone_else_is_never_used(client, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="sacred_gpu")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    planted = tmp_path / f"sacred-gpu-spool-{os.getuid()}"
    planted.mkdir(mode=0o777)
    os.chmod(planted, 0o777)
    (tmp_path / "not-a-dir").write_text("")
    run = run_experiment(logging_steps(steps=5), observer(client, offline=True, spool_dir=tmp_path / "not-a-dir"))
    assert list(planted.iterdir()) == []
    used = private_fallback()
    assert used != planted and stat.S_IMODE(used.stat().st_mode) == 0o700
    [kept] = [r.getMessage() for r in caplog.records if "is kept in" in r.getMessage()]
    spool = Path(kept.split("sacred-gpu sync ")[-1].rstrip("`"))
    [journal] = journals(spool)
    assert spool.parent == tmp_path and spool.name.startswith(planted.name) and str(run._id).endswith(
        journal.folder.name.removeprefix("run-"))


@pytest.mark.parametrize("how", ["spool_dir", "environment"])
def test_a_run_that_changes_directory_keeps_its_journal(client, db, tmp_path, monkeypatch, how):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    if how == "environment":
        monkeypatch.setenv("SACRED_GPU_SPOOL", "journal")
    watcher = observer(client, **({"spool_dir": "journal"} if how == "spool_dir" else {}))

    def main(_run):
        os.chdir(tmp_path / "out")
        for step in range(5):
            _run.log_scalar("loss", float(step), step)
        Path("model.bin").write_bytes(b"m" * 100)
        _run.add_artifact("model.bin")

    run = run_experiment(main, watcher)
    doc = db.runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED" and [a["name"] for a in doc["artifacts"]] == ["model.bin"]
    assert db.metrics.find_one({"run_id": run._id, "name": "loss"})["steps"] == list(range(5))
    assert watcher.spool_dir == tmp_path / "journal" and journals(tmp_path / "journal") == []


def test_folders_and_files_are_private_to_the_user(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "umask", os.umask)  # restored after the test
    os.umask(0o022)
    journal = Journal.create(tmp_path / "spool", {"url": "mongodb://bob@db"})
    journal.append({"seq": 1})
    (tmp_path / "artifact.bin").write_bytes(b"a")
    spooled = journal.spool_file(tmp_path / "artifact.bin")
    journal.ack((1, 0))
    for path in [tmp_path / "spool", journal.folder, journal.files]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in [journal.folder / "state.json", segment_file(journal), journal.files / spooled,
                 journal.folder / "acked"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert not list(journal.folder.glob("*.tmp"))
