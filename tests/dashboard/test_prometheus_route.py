"""``/metrics`` (dashboard/prometheus_route.py): a real Sacred run on two simulated GPUs, scraped while it runs and
after it ends; the exposition is read with prometheus-client's own parser."""

from __future__ import annotations

from typing import Any

import mongomock
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dashboard.app import create_app
from dashboard.board import Board
from sacred_gpu.read import connect
from sacred_gpu.schema import catalog
from sacred_gpu.testing.fake_gpus import two_gpus
from tests.support.board_data import RunningGpuRun
from tests.support.recording import wait_for


def scrape(server: Any, **headers: str) -> dict[str, list[Any]]:
    """The samples of each family ``/metrics`` serves, by family name."""
    response = server.get("/metrics", headers=headers)
    assert response.status_code == 200, response.data[:500]
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    families: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        assert family.type == "gauge", family.name
        families[family.name] = family.samples
    return families


@pytest.fixture
def served() -> Any:
    client = mongomock.MongoClient()
    return client, create_app(Board(connect(client=client, db_name="sacred"))).server.test_client()


def test_a_running_run_is_exposed_with_its_labels_and_gone_one_scrape_after_it_ends(served):
    client, server = served
    assert scrape(server)["sacred_runs_running"][0].value == 0
    with RunningGpuRun(client) as run:
        wait_for(lambda: "sacred_gpu_utilization_ratio" in scrape(server)
                 and scrape(server)["sacred_run_metric_last"], "a heartbeat with system values")
        families = scrape(server)
        [info] = families["sacred_run_info"]
        assert info.labels["experiment"] == "prom_exp" and info.labels["status"] == "RUNNING" and info.value == 1
        run_id = info.labels["run_id"]
        util = {s.labels["gpu"]: s for s in families["sacred_gpu_utilization_ratio"]}
        assert set(util) == {"0", "1"}
        assert [util[gpu].labels["gpu_uuid"] for gpu in ("0", "1")] == [gpu.uuid for gpu in two_gpus()]
        assert all(s.labels["run_id"] == run_id and s.labels["host"] for s in util.values())
        joins = {s.labels["gpu_uuid"]: s.labels["gpu"] for s in families["sacred_gpu_run_info"]}
        assert joins == {gpu.uuid: str(index) for index, gpu in enumerate(two_gpus())}
        assert all(0.0 <= s.value <= 1.0 for s in util.values())  # a ratio, not a percentage
        total = {s.labels["gpu"]: s.value for s in families["sacred_gpu_memory_total_bytes"]}
        assert total == {"0": two_gpus()[0].memory_total_bytes, "1": two_gpus()[1].memory_total_bytes}  # not MiB
        assert all(0 <= s.value <= total[s.labels["gpu"]] for s in families["sacred_gpu_memory_used_bytes"])
        assert families["sacred_gpu_power_watts"][0].value > 0
        assert families["sacred_gpu_temperature_celsius"][0].value > 0
        reasons = {s.labels["reason"] for s in families["sacred_gpu_throttle_reason"]}
        assert reasons == set(catalog.THROTTLE_BITS.values())
        assert families["sacred_host_cpu_utilization_ratio"][0].labels == {
            "run_id": run_id, "experiment": "prom_exp", "host": util["0"].labels["host"]}
        assert families["sacred_process_resident_memory_bytes"][0].value > 2**20
        [loss] = families["sacred_run_metric_last"]
        assert loss.labels["metric"] == "loss" and loss.value == pytest.approx(1 / 3)
        assert families["sacred_run_metric_step"][0].value == 2
        assert families["sacred_run_start_time_seconds"][0].value > 1.7e9  # Unix time, seconds
        assert 0 <= families["sacred_run_heartbeat_age_seconds"][0].value < 60
        run.finish()
        after = scrape(server)  # the first scrape after the run ended
        assert after["sacred_runs_running"][0].value == 0
        assert "sacred_run_info" not in after and "sacred_gpu_utilization_ratio" not in after


def test_a_database_that_cannot_be_read_says_so_in_the_scrape(monkeypatch, served):
    from sacred_gpu.read import RunStore, Unavailable

    _, server = served

    def unreachable(self: Any) -> None:
        raise Unavailable("MongoDB at nowhere:1 cannot be reached")

    monkeypatch.setattr(RunStore, "live_runs", unreachable)
    families = scrape(server)
    assert families == {"sacred_board_database_up": families["sacred_board_database_up"]}
    assert families["sacred_board_database_up"][0].value == 0


def test_metrics_are_behind_the_boards_auth():
    import base64

    board = Board(connect(client=mongomock.MongoClient(), db_name="sacred"))
    server = create_app(board, auth=("ada", "pw")).server.test_client()
    assert server.get("/metrics").status_code == 401
    good = base64.b64encode(b"ada:pw").decode()
    assert scrape(server, Authorization=f"Basic {good}")["sacred_board_database_up"][0].value == 1
