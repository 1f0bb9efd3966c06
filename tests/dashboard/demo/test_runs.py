"""The demo data: real runs of both examples, one for every status a board shows, recorded through the observer
(and, for the runs ended by a signal, through a subprocess's journal and ``sacred_gpu.record.sync``)."""

from __future__ import annotations

import contextlib
import io
import logging
import time
from typing import Any

import mongomock
import pytest

from dashboard.demo import background, simulated
from dashboard.demo import runs as demo_runs
from sacred_gpu import connect, connection
from sacred_gpu.schema import SAMPLING_FIELD

DB = "demo_db"


class Terminal(logging.Handler):
    """What reached the terminal while the demo ran: ``sys.stdout``, ``sys.stderr`` and the root logger's lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.out, self.err, self.records = io.StringIO(), io.StringIO(), []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        return [*self.out.getvalue().splitlines(), *self.err.getvalue().splitlines(),
                *(f"{record.name}: {record.getMessage()}" for record in self.records)]


TERMINAL = Terminal()


@pytest.fixture(scope="module")
def recorded() -> tuple[Any, list[int]]:
    """One populate() with 3 epochs per run, shared by the tests of this module (its spool is its own); what it
    wrote to the terminal goes to :data:`TERMINAL`."""
    client = connection.open_client(client=mongomock.MongoClient())
    root, level = logging.getLogger(), logging.getLogger().level
    root.addHandler(TERMINAL)
    root.setLevel(logging.INFO)  # as sacred-board's
    try:
        with contextlib.redirect_stdout(TERMINAL.out), contextlib.redirect_stderr(TERMINAL.err):
            return client, demo_runs.populate(client, DB, epochs=3, simulate_gpus=True)
    finally:
        root.removeHandler(TERMINAL)
        root.setLevel(level)


@pytest.fixture
def runs(recorded: tuple[Any, list[int]]) -> dict[int, dict]:
    client, run_ids = recorded
    return {doc["_id"]: doc for doc in client[DB]["runs"].find({"_id": {"$in": run_ids}})}


def by_status(runs: dict[int, dict], status: str) -> list[dict]:
    return [doc for doc in runs.values() if doc["status"] == status]


def test_every_status_is_recorded(recorded, runs):
    client, run_ids = recorded
    assert len(run_ids) == len(set(run_ids)) == len(runs) == len(demo_runs.DEMO_RUNS) + len(background.BACKGROUND_RUNS)
    assert sorted(doc["status"] for doc in runs.values()) == sorted(
        ["COMPLETED"] * 5 + ["FAILED", "QUEUED", "RUNNING", "INTERRUPTED"])
    assert client[DB]["runs"].count_documents({}) == len(run_ids)  # nothing went elsewhere


def test_completed_runs_of_two_experiments_trained_and_saved_models(recorded, runs):
    client, _ = recorded
    completed = by_status(runs, "COMPLETED")
    names = sorted(doc["experiment"]["name"] for doc in completed)
    assert names == ["train_diabetes"] * 2 + ["train_digits"] * 3
    for doc in completed:
        metric = "val_acc" if doc["experiment"]["name"] == "train_digits" else "val_r2"
        series = client[DB]["metrics"].find_one({"run_id": doc["_id"], "name": metric})
        assert series["steps"] == [1, 2, 3] and series["values"][-1] == doc["result"]
        assert doc["config"]["epochs"] == 3 and [a["name"] for a in doc["artifacts"]][-1] == "model.pkl"
        assert "epoch   3/3" in doc["captured_out"] or "epoch    3/3" in doc["captured_out"]
    sweep = [doc for doc in completed if doc["experiment"]["name"] == "train_digits"]
    assert sorted(doc["config"]["learning_rate"] for doc in sweep) == [0.0003, 0.001, 0.003]
    assert max(doc["result"] for doc in sweep) > 0.5  # three epochs of a real model already beat chance (0.1)


def test_failed_run_diverged_and_its_trace_says_why(recorded, runs):
    client, _ = recorded
    [failed] = by_status(runs, "FAILED")
    assert failed["experiment"]["name"] == "train_digits" and failed["config"]["learning_rate"] == 10.0
    assert "TrainingDiverged" in failed["fail_trace"][-1] and "exceeds max_loss 10.0" in failed["fail_trace"][-1]
    assert failed["stop_time"] >= failed["start_time"]
    loss = client[DB]["metrics"].find_one({"run_id": failed["_id"], "name": "train_loss"})
    assert loss["steps"] == [1] and loss["values"][0] > failed["config"]["max_loss"]  # logged, then the guard


def test_killed_run_stays_running_and_reads_as_probably_dead(recorded, runs):
    client, _ = recorded
    [killed] = by_status(runs, "RUNNING")
    assert killed["experiment"]["name"] == "train_digits" and killed["config"]["epochs"] == 1000
    assert killed.get("stop_time") is None and killed["heartbeat"] is not None
    acc = client[DB]["metrics"].find_one({"run_id": killed["_id"], "name": "val_acc"})
    assert 3 <= acc["steps"][-1] < 1000  # killed mid-training, after the epochs the demo waited for
    assert max(acc["timestamps"]) <= killed["heartbeat"]  # its points came with beats; no beat came after them
    assert "with SIGKILL after epoch" in killed["omniboard"]["notes"]
    assert killed["meta"]["options"]["--gpu_mongo"] == DB  # recorded by the script's -g option, offline

    query = f"id == {killed['_id']}"
    fresh = connect(client=client, db_name=DB).runs(query)
    assert fresh.loc[killed["_id"], "status"] == "RUNNING"  # its heartbeat is younger than 120 s
    time.sleep(0.6)
    store = connect(client=client, db_name=DB, dead_after=0.5)
    assert store.runs(query).loc[killed["_id"], "status"] == "PROBABLY_DEAD"
    assert store.count("status == PROBABLY_DEAD") == 1


def test_interrupted_and_queued_runs(runs):
    [interrupted] = by_status(runs, "INTERRUPTED")
    assert interrupted["experiment"]["name"] == "train_diabetes" and interrupted["stop_time"] is not None
    assert "Ctrl-C" in interrupted["omniboard"]["notes"]
    [queued] = by_status(runs, "QUEUED")
    assert queued.get("start_time") is None and queued["meta"]["comment"].startswith("queued with --queue")


def test_tags_and_notes(recorded, runs):
    client, _ = recorded
    table = connect(client=client, db_name=DB).runs()
    tagged = table[table["tags"].map(len) > 0]
    assert len(tagged) >= 5
    [best] = table[table["tags"].map(lambda tags: "best" in tags)].index
    sweep = table[table["tags"].map(lambda tags: "lr-sweep" in tags)]
    assert best in sweep.index and sweep.loc[best, "result"] == sweep["result"].max()
    assert table.loc[best, "notes"].startswith("best val_acc of the learning-rate sweep")
    [baseline] = table[table["tags"].map(lambda tags: "baseline" in tags)].index
    assert table.loc[baseline, "notes"] == "regression baseline on the diabetes data"  # from --comment
    assert "omniboard" not in runs[baseline] or "notes" not in runs[baseline]["omniboard"]


def test_simulated_gpus_are_named_so(runs):
    in_process = [doc for doc in runs.values() if doc["status"] in ("COMPLETED", "FAILED", "QUEUED")]
    for doc in in_process:
        names = [gpu["name"] for gpu in doc["host"]["gpu_inventory"]]
        assert names == [simulated.SIMULATED_GPU] * 2 and "(simulated)" in simulated.SIMULATED_GPU


def test_recorded_runs_gpu_series_differ_and_have_shape(recorded, runs):
    client, _ = recorded
    store = connect(client=client, db_name=DB)
    sweep = sorted(doc["_id"] for doc in by_status(runs, "COMPLETED") if doc["experiment"]["name"] == "train_digits")
    series = [store.system(run_id) for run_id in sweep]
    seeds = {demo_runs.gpu_seed(runs[run_id]["config"]) for run_id in sweep}
    assert len(seeds) == len(sweep)  # the sweep shares its Sacred seed, not its GPUs' curves
    for run_id, frame in zip(sweep, series):  # sampled 10x a second, temperature twice: seconds-long runs have shape
        assert runs[run_id][SAMPLING_FIELD] == {"interval_s": 0.1, "slow_interval_s": 0.5}
        assert frame["sys/gpu0/util_pct"].notna().any() and frame["sys/gpu0/temp_c"].notna().any()
    gpu0 = [frame[["sys/gpu0/util_pct", "sys/gpu0/mem_used_mib"]].reset_index(drop=True) for frame in series]
    assert not gpu0[0].equals(gpu0[1]) and not gpu0[1].equals(gpu0[2])


def test_training_lines_stay_out_of_the_terminal_and_in_the_runs_output(runs):
    lines = TERMINAL.lines()
    assert lines and all(line.startswith(("dashboard.demo", "sacred_gpu")) for line in lines), lines
    assert len(lines) <= len(demo_runs.DEMO_RUNS) + 5 and not [line for line in lines if "/3  train_" in line]
    for doc in by_status(runs, "COMPLETED"):
        out = doc["captured_out"]
        assert "training on" in out and "/3  train_" in out  # the example's prints
        assert f"Started run with ID \"{doc['_id']}\"" in out and "Completed after" in out  # Sacred's own lines
        assert "sacred_gpu_demo" not in out  # logged as Sacred logs them, under the experiment's name
