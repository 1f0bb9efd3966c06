"""Our documents have the shape Sacred's stock MongoObserver gives them, so Omniboard and Incense read them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import gridfs
import pytest
from sacred.observers import MongoObserver

from sacred_gpu import GpuMongoObserver
from sacred_gpu.testing.fake_nvml import FakeNvml
from tests.support.experiments import run_experiment


def shape(value: Any, path: str = "") -> dict[str, set[str]]:
    """Map every path in a document to the type names found there (list items share the path ``[]``)."""
    found: dict[str, set[str]] = {path: {type(value).__name__}}
    children: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        children = [(f"{path}.{key}", item) for key, item in value.items()]
    elif isinstance(value, list):
        children = [(f"{path}[]", item) for item in value]
    for child_path, item in children:
        for key, names in shape(item, child_path).items():
            found.setdefault(key, set()).update(names)
    return found


#: Paths whose contents vary with the machine or with what a particular process imported, not with the observer.
VOLATILE = (".host.ENV", ".meta.options", ".experiment.dependencies", ".experiment.sources")


def assert_same_shape(stock: dict, ours: dict) -> None:
    stock_shape, our_shape = shape(stock), shape(ours)
    for path, types in stock_shape.items():
        if path.startswith(VOLATILE):
            continue
        assert path in our_shape, f"{path} is written by Sacred's observer but not by ours"
        assert our_shape[path] == types, f"{path}: Sacred stores {types}, we store {our_shape[path]}"


def experiment_main(tmp):
    def main(_run, lr):
        import pathlib

        folder = pathlib.Path(tmp)
        (folder / "table.csv").write_text("a,b\n1,2\n")
        (folder / "vocab.txt").write_text("hello")
        _run.open_resource(str(folder / "vocab.txt")).close()
        for step in range(5):
            _run.log_scalar("loss", 1.0 / (step + 1), step)
            _run.log_scalar("acc", step * 0.2, step)
        _run.info["best"] = {"step": 4, "loss": 0.2}
        _run.add_artifact(str(folder / "table.csv"), metadata={"rows": 1})
        print("training done")
        return {"loss": 0.2}

    return main


@pytest.fixture
def recorded(client, tmp_path):
    """The same experiment recorded by Sacred's MongoObserver (database ``stock``) and by ours (``ours``)."""
    stock_db, our_db = client["stock"], client["ours"]
    stock = MongoObserver.create_from(stock_db.runs, gridfs.GridFS(stock_db), metrics_collection=stock_db.metrics)
    ours = GpuMongoObserver(client=client, db_name="ours", nvml=FakeNvml([]))
    stock_run = run_experiment(experiment_main(str(tmp_path)), stock, config={"lr": 0.1, "seed": 1})
    our_run = run_experiment(experiment_main(str(tmp_path)), ours, config={"lr": 0.1, "seed": 1})
    return stock_db, stock_run._id, our_db, our_run._id


def test_run_documents_have_the_stock_shape(recorded):
    stock_db, stock_id, our_db, our_id = recorded
    stock, ours = stock_db.runs.find_one({"_id": stock_id}), our_db.runs.find_one({"_id": our_id})
    assert_same_shape(stock, ours)
    assert ours["config"] == stock["config"] and ours["result"] == stock["result"]
    assert ours["info"]["best"] == stock["info"]["best"]
    # Sacred's observer prints its content-type guess into the run's own output; ours logs it at most
    assert ours["captured_out"] == "training done\n" and stock["captured_out"].endswith("training done\n")
    assert ours["resources"] == stock["resources"]
    assert [a["name"] for a in ours["artifacts"]] == [a["name"] for a in stock["artifacts"]]


def test_metric_documents_have_the_stock_shape(recorded):
    stock_db, stock_id, our_db, our_id = recorded
    for name in ("loss", "acc"):
        stock = stock_db.metrics.find_one({"run_id": stock_id, "name": name})
        ours = our_db.metrics.find_one({"run_id": our_id, "name": name})
        assert_same_shape(stock, ours)
        assert (ours["steps"], ours["values"]) == (stock["steps"], stock["values"])


def test_gridfs_files_have_the_stock_shape(recorded):
    stock_db, stock_id, our_db, our_id = recorded
    for kind in ("artifacts", "sources"):
        stock_run, our_run = stock_db.runs.find_one({"_id": stock_id}), our_db.runs.find_one({"_id": our_id})
        stock_ids = [a["file_id"] for a in stock_run["artifacts"]] if kind == "artifacts" else [
            s[1] for s in stock_run["experiment"]["sources"]]
        our_ids = [a["file_id"] for a in our_run["artifacts"]] if kind == "artifacts" else [
            s[1] for s in our_run["experiment"]["sources"]]
        for stock_id_, our_id_ in zip(stock_ids, our_ids):
            stock_file = stock_db.fs.files.find_one({"_id": stock_id_})
            our_file = our_db.fs.files.find_one({"_id": our_id_})
            assert_same_shape(stock_file, our_file)
            assert our_file["filename"].replace(str(our_id), "ID") == stock_file["filename"].replace(str(stock_id),
                                                                                                     "ID")


def test_incense_reads_our_runs(recorded, client, monkeypatch):
    from incense import experiment_loader as incense_loader

    _, _, _, our_id = recorded
    monkeypatch.setattr(incense_loader, "MongoClient", lambda *args, **kwargs: client)
    loader = incense_loader.ExperimentLoader(db_name="ours")

    experiment = loader.find_by_id(our_id)
    assert experiment.config["lr"] == 0.1 and experiment.status == "COMPLETED"
    assert experiment.metrics["loss"].tolist() == [1.0 / (s + 1) for s in range(5)]
    assert experiment.metrics["loss"].index.tolist() == list(range(5))
    assert experiment.artifacts["table.csv"].content == b"a,b\n1,2\n"
    assert isinstance(experiment.start_time, dt.datetime)
    assert [e.id for e in loader.find_by_config_key("lr", 0.1)] == [our_id]
    table = loader.find_by_ids([our_id]).project(on=["config.lr", {"metrics.loss": min}])
    assert table.loc[our_id, "lr"] == 0.1 and table.loc[our_id, "loss_min"] == 0.2
