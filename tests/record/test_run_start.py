"""The git repository an experiment lives in is recorded as Sacred records it: url, commit, dirty."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from sacred_gpu import GpuMongoObserver
from sacred_gpu.testing.fake_nvml import FakeNvml

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
