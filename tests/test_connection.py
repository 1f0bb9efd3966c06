"""``host:port:db`` specs and URIs (``sacred_gpu/connection.py``)."""

from __future__ import annotations

import pytest

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
