"""GpuMongoObserver records every part of real Sacred runs, in Sacred's format.
Captured output capped, the full output as an artifact; the observer attached from a script's
command line (``gpu_mongo_option``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from pathlib import Path

import bson
import gridfs
import mongomock
import pytest
from bson import ObjectId
from sacred import Experiment
from sacred.utils import TimeoutInterrupt

from sacred_gpu import GpuMongoObserver, gpu_mongo_option, schema
from sacred_gpu.testing.fake_nvml import FakeNvml, two_gpus
from tests.support import experiments
from tests.support.experiments import run_experiment
from tests.support.recording import LIMIT, wait_for

#: Experiments are created in tests/support/experiments.py, so Sacred records it as their main file and source.
MAINFILE = Path(experiments.__file__)


def test_completed_run_records_every_field(observer, db, tmp_path):
    resource = tmp_path / "data.csv"
    resource.write_text("x,y\n1,2\n")
    image = tmp_path / "plot.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nfake image")
    during = {}

    def main(_run, lr):
        print("epoch 0 starting")
        during["captured"] = wait_for(
            lambda: "epoch 0" in (db.runs.find_one({"_id": _run._id}) or {}).get("captured_out", ""),
            "the output at a heartbeat")
        for step in range(10):
            _run.log_scalar("loss", 1.0 / (step + 1), step)
            _run.log_scalar("acc", step / 10)
        with _run.open_resource(str(resource)) as handle:
            handle.read()
        _run.add_artifact(str(image), "plot.png", metadata={"epoch": 3})
        print("done")
        return 0.93

    run = run_experiment(
        main, observer, config={"lr": 0.01, "layers": [64, 32], "optim": {"name": "adam", "betas": [0.9, 0.99]}},
        options={"--comment": "first try", "--priority": 3},
    )
    doc = db.runs.find_one({"_id": run._id})

    assert isinstance(run._id, int) and run._failed_observers == []
    assert doc["status"] == "COMPLETED" and doc["command"] == "main" and doc["format"] == schema.FORMAT
    assert doc["config"] == {"lr": 0.01, "layers": [64, 32], "optim": {"name": "adam", "betas": [0.9, 0.99]},
                             "seed": run.config["seed"]}
    assert doc["meta"]["comment"] == "first try" and doc["meta"]["priority"] == 3
    assert doc["meta"]["command"] == "main" and doc["meta"]["options"]["--comment"] == "first try"
    # captured output reached the database at a heartbeat, while the run was still going
    assert during["captured"] and "done" in doc["captured_out"] and "epoch 0 starting" in doc["captured_out"]
    # times: naive UTC, in order
    assert isinstance(doc["start_time"], dt.datetime) and doc["start_time"].tzinfo is None
    assert doc["start_time"] <= doc["heartbeat"] <= doc["stop_time"] + dt.timedelta(seconds=1)
    assert doc["result"] == 0.93
    # host
    assert {"hostname", "os", "python_version", "cpu", "gpu_inventory"} <= set(doc["host"])
    assert doc["host"]["gpu_inventory"] == []
    # experiment
    experiment = doc["experiment"]
    assert experiment["name"] == "test_experiment"
    assert experiment["mainfile"] == MAINFILE.name
    assert experiment["base_dir"] == str(MAINFILE.parent)
    assert any(dep.startswith("sacred==") for dep in experiment["dependencies"])
    fs = gridfs.GridFS(db)
    sources = dict(experiment["sources"])
    assert fs.get(sources[MAINFILE.name]).read() == MAINFILE.read_bytes()
    # resources: listed as [path, md5] like Sacred, and stored
    md5 = hashlib.md5(resource.read_bytes()).hexdigest()
    assert doc["resources"] == [[str(resource), md5]]
    assert fs.find_one({"filename": str(resource), "md5": md5}).read() == resource.read_bytes()
    # artifacts
    [artifact] = doc["artifacts"]
    stored = fs.get(artifact["file_id"])
    assert artifact["name"] == "plot.png" and stored.read() == image.read_bytes()
    assert stored.filename == f"artifact://runs/{run._id}/plot.png"
    assert stored._file["contentType"] == "image/png" and stored.metadata == {"epoch": 3}
    # metrics: one document per (run, name), referenced from info.metrics
    refs = {ref["name"]: ref["id"] for ref in doc["info"]["metrics"]}
    assert set(refs) == {"loss", "acc"}
    loss = db.metrics.find_one({"_id": ObjectId(refs["loss"])})
    assert loss["run_id"] == run._id and loss["name"] == "loss"
    assert loss["steps"] == list(range(10)) and loss["values"] == [1.0 / (s + 1) for s in range(10)]
    assert len(loss["timestamps"]) == 10 and all(isinstance(t, dt.datetime) for t in loss["timestamps"])
    assert db.metrics.find_one({"_id": ObjectId(refs["acc"])})["steps"] == list(range(10))
    assert db.metrics.count_documents({"run_id": run._id}) == 2


def test_metrics_accumulate_across_heartbeats(observer, db):
    def main(_run):
        for step in range(30):
            _run.log_scalar("loss", float(step), step)
            time.sleep(0.01)  # several heartbeats (every 0.05 s) happen in between

    run = run_experiment(main, observer)
    [series] = db.metrics.find({"run_id": run._id})
    assert series["steps"] == list(range(30)) and series["values"] == [float(s) for s in range(30)]
    assert len(db.runs.find_one({"_id": run._id})["info"]["metrics"]) == 1


def test_failed_run_stores_fail_trace(observer, db):
    def main():
        raise ValueError("diverged at step 7")

    with pytest.raises(ValueError):
        run_experiment(main, observer)
    doc = db.runs.find_one()
    assert doc["status"] == "FAILED" and isinstance(doc["stop_time"], dt.datetime)
    assert isinstance(doc["fail_trace"], list) and all(isinstance(line, str) for line in doc["fail_trace"])
    assert "ValueError: diverged at step 7" in "".join(doc["fail_trace"])


@pytest.mark.parametrize(
    ("exception", "status"), [(KeyboardInterrupt, "INTERRUPTED"), (TimeoutInterrupt, "TIMEOUT")]
)
def test_interrupted_runs_store_their_status(observer, db, exception, status):
    def main():
        raise exception()

    with pytest.raises(exception):
        run_experiment(main, observer)
    doc = db.runs.find_one()
    assert doc["status"] == status and isinstance(doc["stop_time"], dt.datetime)


def test_queued_run(observer, db):
    def main():
        raise AssertionError("a queued run does not execute")

    run_experiment(main, observer, options={"--queue": True})
    doc = db.runs.find_one()
    assert doc["status"] == "QUEUED" and isinstance(doc["_id"], int)
    assert doc["command"] == "main" and "start_time" not in doc and doc["experiment"]["sources"]


def test_given_run_id_is_used(observer, db):
    run = run_experiment(lambda: None, observer, options={"--id": 1234})
    assert run._id == 1234 and db.runs.find_one({"_id": 1234})["status"] == "COMPLETED"


def test_sources_and_resources_are_stored_once_across_runs(client, db, tmp_path):
    resource = tmp_path / "vocab.txt"
    resource.write_text("a b c")

    def main(_run):
        _run.open_resource(str(resource)).close()

    first = run_experiment(main, GpuMongoObserver(client=client, nvml=FakeNvml([])))
    second = run_experiment(main, GpuMongoObserver(client=client, nvml=FakeNvml([])))
    docs = [db.runs.find_one({"_id": run._id}) for run in (first, second)]
    assert docs[0]["experiment"]["sources"] == docs[1]["experiment"]["sources"]
    source_path = str(MAINFILE)
    assert db.fs.files.count_documents({"filename": source_path}) == 1
    assert db.fs.files.count_documents({"filename": str(resource)}) == 1
    # Sacred's own lookup ({filename, md5}) finds our copy, so its observer reuses it too
    md5 = hashlib.md5(Path(source_path).read_bytes()).hexdigest()
    assert gridfs.GridFS(db).find_one({"filename": source_path, "md5": md5}) is not None


def test_changed_source_is_stored_again(client, db, tmp_path):
    path = tmp_path / "module.txt"
    path.write_text("version 1")
    writer = GpuMongoObserver(client=client).writer
    first = writer.put_deduplicated(path, hashlib.md5(b"version 1").hexdigest())
    path.write_text("version 2")
    second = writer.put_deduplicated(path, hashlib.md5(b"version 2").hexdigest())
    assert first != second and gridfs.GridFS(db).get(second).read() == b"version 2"


def test_omniboard_tags_and_notes_are_never_overwritten(observer, db, tmp_path):
    artifact = tmp_path / "notes.txt"
    artifact.write_text("x")

    def main(_run):
        db.runs.update_one({"_id": _run._id}, {"$set": {"omniboard.tags": ["baseline"], "omniboard.notes": "ok"}})
        _run.log_scalar("loss", 1.0)
        time.sleep(0.15)  # heartbeats write after the tags were set
        _run.add_artifact(str(artifact))
        return 1

    run = run_experiment(main, observer)
    doc = db.runs.find_one({"_id": run._id})
    assert doc["omniboard"] == {"tags": ["baseline"], "notes": "ok"} and doc["status"] == "COMPLETED"
    with pytest.raises(ValueError, match="other tools own it"):
        observer.writer.update_run(run._id, {"omniboard.tags": []})


def test_gpu_inventory_from_nvml(client, db, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-2222")
    nvml = FakeNvml(two_gpus(), driver_version="550.54.15", cuda_version=12040)
    run = run_experiment(lambda: None, GpuMongoObserver(client=client, nvml=nvml))
    inventory = db.runs.find_one({"_id": run._id})["host"]["gpu_inventory"]
    assert [gpu["index"] for gpu in inventory] == [0, 1]
    assert inventory[0] == {
        "index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-11111111-aaaa-bbbb-cccc-000000000000",
        "memory_total_mib": 81920.0, "pci_bus_id": "00000000:17:00.0", "driver_version": "550.54.15",
        "cuda_driver_version": "12.4", "visible": False,
    }
    assert inventory[1]["name"] == "NVIDIA A100-SXM4-40GB" and inventory[1]["visible"] is True
    assert nvml.initialised == 0  # NVML shut down again after reading


def test_no_nvml_library_gives_empty_inventory_and_one_info_line(client, db, caplog):
    caplog.set_level(logging.INFO, logger="sacred_gpu")
    run = run_experiment(lambda: None, GpuMongoObserver(client=client, nvml=FakeNvml(missing=True)))
    assert db.runs.find_one({"_id": run._id})["host"]["gpu_inventory"] == []
    lines = [r for r in caplog.records if r.name.startswith("sacred_gpu") and "GPU" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO


def test_collection_prefix(client):
    def main(_run, tmp):
        Path(tmp, "a.txt").write_text("a")
        _run.add_artifact(str(Path(tmp, "a.txt")))
        _run.log_scalar("loss", 0.5)

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run = run_experiment(main, GpuMongoObserver(client=client, db_name="proj", collection_prefix="vision"),
                             config={"tmp": tmp})
    db = client["proj"]
    assert db.vision_runs.find_one({"_id": run._id})["status"] == "COMPLETED"
    assert db.vision_metrics.count_documents({"run_id": run._id}) == 1
    assert "runs" not in db.list_collection_names()
    assert db.fs.files.find_one({"filename": f"artifact://vision_runs/{run._id}/a.txt"}) is not None


def test_client_arguments_are_checked(client):
    with pytest.raises(ValueError, match="not both"):
        GpuMongoObserver(url="mongodb://localhost", client=client)
    with pytest.raises(TypeError, match="pymongo-compatible"):
        GpuMongoObserver(client=object())
    with pytest.raises(ValueError, match="invalid collection prefix"):
        GpuMongoObserver(client=client, collection_prefix="$bad")


def test_hundred_megabytes_of_output_store_capped_with_the_full_output_as_an_artifact(client, db):
    line = "x" * 99 + "\n"

    def main():
        print("FIRST LINE")
        for _ in range(100):
            print(line * 10_000, end="")  # 1 MB at a time, 100 MB in all
        print("LAST LINE")

    observer = GpuMongoObserver(client=client, nvml=FakeNvml([]), sampling=False, output_artifact=True)
    run = run_experiment(main, observer, options={"--beat-interval": 1.0})
    doc = db.runs.find_one({"_id": run._id})
    assert len(bson.encode(doc)) < LIMIT and doc["status"] == "COMPLETED"
    out = doc["captured_out"]
    assert out.startswith("FIRST LINE") and out.endswith("LAST LINE\n") and "sacred-gpu: " in out
    assert len(out) < schema.OUTPUT_CAP + 200
    [artifact] = doc["artifacts"]
    stored = gridfs.GridFS(db).get(artifact["file_id"])
    assert artifact["name"] == "captured_out.txt" and stored.length == len("FIRST LINE\n") + 100_000_000 + 10


def make_experiment():
    ex = Experiment("cli_experiment", additional_cli_options=[gpu_mongo_option], save_git_info=False)

    @ex.main
    def main(_run):
        _run.log_scalar("loss", 0.5)
        return 7

    return ex


@pytest.mark.parametrize(
    ("argument", "db_name"), [("localhost:27017:cli_db", "cli_db"), ("mongodb://localhost:27017/uri_db", "uri_db")]
)
def test_command_line_option_attaches_the_observer(argument, db_name):
    with mongomock.patch(servers=(("localhost", 27017),)):
        run = make_experiment().run_commandline(["train.py", "--capture=sys", "-g", argument])
        [observer] = run.observers
        assert isinstance(observer, GpuMongoObserver)
        import pymongo

        doc = pymongo.MongoClient("localhost", 27017)[db_name].runs.find_one({"_id": run._id})
    assert doc["status"] == "COMPLETED" and doc["result"] == 7
    assert doc["meta"]["options"]["--gpu_mongo"] == argument


def test_command_line_option_is_listed_in_help(capsys):
    with pytest.raises(SystemExit):
        make_experiment().run_commandline(["train.py", "--help"])
    assert "--gpu_mongo" in capsys.readouterr().out
