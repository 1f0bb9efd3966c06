"""``import sacred_gpu`` costs nothing heavy: neither pandas nor dash (nor Sacred, pymongo, numpy) until used.
``python benchmarks/import_cost.py`` prints the milliseconds."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pandas", "dash", "sacred", "numpy", "pymongo", "bson", "plotly")


def loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def test_import_sacred_gpu_loads_nothing_heavy():
    assert loaded_after("import sacred_gpu") == []


def test_the_observer_and_connect_load_what_they_need_on_first_use():
    assert "sacred" in loaded_after("from sacred_gpu import GpuMongoObserver")
    assert "pandas" in loaded_after("import sacred_gpu, mongomock\nsacred_gpu.connect(client=mongomock.MongoClient())")
    assert loaded_after("import sacred_gpu\ndir(sacred_gpu)") == []
