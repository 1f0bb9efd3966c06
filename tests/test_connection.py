"""Attaching the observer from a script's command line, the way Sacred's ``-m`` attaches its own."""

from __future__ import annotations

import mongomock
import pytest
from sacred import Experiment

from sacred_gpu import GpuMongoObserver, gpu_mongo_option
from sacred_gpu.connection import MongoSpec, parse_mongo_spec


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("sacred", MongoSpec(None, "sacred")),
        ("localhost:27017", MongoSpec("localhost:27017", "sacred")),
        ("db.example.org:27018:experiments", MongoSpec("db.example.org:27018", "experiments")),
        ("localhost:27017:runs2!10", MongoSpec("localhost:27017", "runs2", 10)),
        ("mongodb://user:pw@h1:1,h2:2/vision?authSource=admin", MongoSpec(
            "mongodb://user:pw@h1:1,h2:2/vision?authSource=admin", "vision")),
        ("mongodb://localhost:27017", MongoSpec("mongodb://localhost:27017", "sacred")),
    ],
)
def test_parse_mongo_spec(spec, expected):
    assert parse_mongo_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "host:port:db", "localhost:27017:bad/db", "a:1:b:c", "mongodb:///db", "$where"])
def test_parse_mongo_spec_rejects_malformed_specs(spec):
    with pytest.raises(ValueError, match="invalid"):
        parse_mongo_spec(spec)


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
