"""A run's start (``record/run_start.py``): the git repository recorded as Sacred records it, an observer attached
twice, an unreachable database (an offline run)."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
import threading
import time

import pytest
from sacred import Experiment

from sacred_gpu import GpuMongoObserver
from sacred_gpu.record.sync import journals
from sacred_gpu.testing.fake_nvml import FakeNvml
from tests.support.experiments import FAST, run_experiment
from tests.support.recording import observer, wait_for

EXPERIMENT = '''
from sacred import Experiment

ex = Experiment("in_a_repo")


@ex.main
def main():
    return 1
'''


def git(folder, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, text=True).stdout.strip()


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_repository_url_commit_and_dirty_flag(client, db, tmp_path):
    repo = tmp_path / "project"
    repo.mkdir()
    script = repo / "train_in_repo.py"
    script.write_text(EXPERIMENT)
    git(repo, "init", "-q")
    git(repo, "remote", "add", "origin", "https://example.org/lab/project.git")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "first")
    commit = git(repo, "rev-parse", "HEAD")

    def run_once(module_name):
        ex = load(script, module_name).ex
        ex.observers.append(GpuMongoObserver(client=client, nvml=FakeNvml([])))
        return db.runs.find_one({"_id": ex.run(options={"--capture": "sys"})._id})

    clean = run_once("train_in_repo_clean")
    assert clean["experiment"]["repositories"] == [
        {"url": "https://example.org/lab/project.git", "commit": commit, "dirty": False}
    ]
    assert clean["experiment"]["mainfile"] == "train_in_repo.py" and clean["experiment"]["base_dir"] == str(repo)

    script.write_text(EXPERIMENT + "\n# an uncommitted change\n")
    dirty = run_once("train_in_repo_dirty")
    assert dirty["experiment"]["repositories"][0]["dirty"] is True
    # the changed file is a new source document; the unchanged content was not stored twice
    assert dirty["experiment"]["sources"][0][1] != clean["experiment"]["sources"][0][1]
    assert db.fs.files.count_documents({"filename": str(script)}) == 2


def test_an_observer_attached_twice_fails_the_run_once_and_leaves_nothing_behind(client, db, spool):
    watcher = observer(client)
    ex = Experiment("twice", save_git_info=False)
    ex.main(lambda: 1)
    ex.observers.extend([watcher, watcher])  # a notebook cell that appends it, run twice
    with pytest.raises(Exception, match="attached to the run twice"):
        ex.run(options=FAST)
    [doc] = list(db.runs.find({}))
    assert doc["status"] == "FAILED" and "attached to the run twice" in "".join(doc["fail_trace"])
    assert journals(spool) == []
    wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith("sacred-gpu")],
             "the observer's threads ending")
    ex.observers.pop()  # fixed: the next run of the same observer is recorded as usual
    assert ex.run(options=FAST).status == "COMPLETED" and db.runs.count_documents({"status": "COMPLETED"}) == 1


def test_unreachable_database_at_start_means_an_offline_run(spool, caplog):
    caplog.set_level(logging.WARNING, logger="sacred_gpu")
    observer = GpuMongoObserver(url="mongodb://127.0.0.1:9", serverSelectionTimeoutMS=300, nvml=FakeNvml([]))
    started = time.monotonic()
    run = run_experiment(lambda: 7, observer)
    assert run.result == 7 and str(run._id).startswith("offline-")
    assert time.monotonic() - started < 10
    [warning] = [r.getMessage() for r in caplog.records if "OFFLINE" in r.getMessage()]
    assert "mongodb://127.0.0.1:9 (database 'sacred') cannot be reached: ServerSelectionTimeoutError" in warning
    assert len(warning) < 500 and str(spool) in warning
    [journal] = [p for p in spool.iterdir() if p.is_dir()]
    assert str(journal) in warning
