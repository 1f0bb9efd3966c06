"""sacred-board's ``/metrics`` scraped by a real Prometheus (Debian's ``prometheus`` package, run on loopback) while a
real Sacred run records on two simulated GPUs; every series is asked for through Prometheus's HTTP API with its
labels, and every PromQL expression of the Grafana dashboard (docker/grafana/dashboards/sacred-gpu.json) must return
data. Without the binary these tests are skipped with the reason, unless ``SACRED_GPU_REQUIRE_PROMETHEUS=1`` (set
by CI, which installs the package) makes that a failure."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mongomock
import pytest

from dashboard.board import Board
from sacred_gpu.read import connect
from sacred_gpu.testing.fake_gpus import two_gpus
from tests.support.board_data import RunningGpuRun
from tests.support.recording import wait_for
from tests.support.serving import Served, free_port, get

PROMETHEUS = shutil.which("prometheus")
DASHBOARD = Path(__file__).resolve().parents[2] / "docker" / "grafana" / "dashboards" / "sacred-gpu.json"
#: Seconds to wait for what Prometheus does on its own schedule (its first scrape comes ~5 s after it is ready).
PATIENCE = 60.0


class Prometheus:
    """A Prometheus scraping ``target`` (host:port) every second, its data in ``folder``; :meth:`query` asks its
    HTTP API."""

    def __init__(self, folder: Path, target: str) -> None:
        config = folder / "prometheus.yml"
        config.write_text(json.dumps({  # YAML is a superset of JSON
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "sacred-board", "metrics_path": "/metrics",
                                "static_configs": [{"targets": [target]}]}]}))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = (folder / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}"], stdout=self.log, stderr=subprocess.STDOUT)
        self._wait(lambda: self._ready(), "Prometheus ready")

    def _ready(self) -> bool:
        assert self.process.poll() is None, Path(self.log.name).read_text()[-3000:]
        try:
            return get(f"{self.url}/-/ready")[0] == 200
        except OSError:
            return False

    def _wait(self, condition: Any, what: str) -> Any:
        try:
            return wait_for(condition, what, PATIENCE, every=0.25)
        except AssertionError as late:
            pytest.fail(f"{late}; Prometheus's log: {Path(self.log.name).read_text()[-2000:]}")

    def api(self, path: str, **params: str) -> Any:
        status, body = get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        reply = json.loads(body)
        assert status == 200 and reply["status"] == "success", (path, params, body[:1000])
        return reply["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` gives now: ``[{"metric": labels, "value": [time, "value"]}]``."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return data["result"]

    def wait_for(self, expr: str) -> list[dict[str, Any]]:
        """``expr``'s result once it is not empty (scrapes come on Prometheus's schedule)."""
        return self._wait(lambda: self.query(expr), f"data for {expr}")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[tuple[Any, Served, Prometheus]]:
    """A board on an empty database, and a Prometheus scraping it every second."""
    if PROMETHEUS is None:
        if os.environ.get("SACRED_GPU_REQUIRE_PROMETHEUS") == "1":
            pytest.fail("prometheus not found (apt-get install prometheus)")
        pytest.skip("prometheus not found: apt-get install prometheus")
    client = mongomock.MongoClient()
    served = Served(Board(connect(client=client, db_name="sacred")))
    prometheus = Prometheus(tmp_path, served.url.removeprefix("http://"))
    try:
        yield client, served, prometheus
    finally:
        prometheus.close()
        served.close()


def dashboard_expressions(variables: dict[str, str]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of the Grafana dashboard, its variables replaced by ``variables``."""
    board = json.loads(DASHBOARD.read_text())
    found = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = re.sub(r"\$(\w+)", lambda hit: variables[hit.group(1)], target["expr"])
            found.append((panel["title"], expr))
    return found


def test_prometheus_scrapes_every_series_with_its_labels_and_every_dashboard_query_has_data(scraped):
    client, _, prometheus = scraped
    with RunningGpuRun(client) as run:
        [info] = prometheus.wait_for('sacred_run_info{experiment="prom_exp"}')
        run_id, host = info["metric"]["run_id"], info["metric"]["host"]
        assert info["metric"]["status"] == "RUNNING" and info["metric"]["job"] == "sacred-board"
        prometheus.wait_for(f'sacred_gpu_temperature_celsius{{run_id="{run_id}"}}')
        uuids = {str(index): gpu.uuid for index, gpu in enumerate(two_gpus())}
        for name in ("sacred_gpu_utilization_ratio", "sacred_gpu_memory_used_bytes", "sacred_gpu_memory_total_bytes",
                     "sacred_gpu_power_watts", "sacred_gpu_power_limit_watts", "sacred_gpu_temperature_celsius",
                     "sacred_gpu_throttle_reasons", "sacred_gpu_sm_clock_hertz", "sacred_gpu_run_info"):
            series = prometheus.query(f'{name}{{run_id="{run_id}"}}')
            labels = {(s["metric"]["gpu"], s["metric"]["gpu_uuid"], s["metric"]["experiment"], s["metric"]["host"])
                      for s in series}
            assert labels == {(gpu, uuid, "prom_exp", host) for gpu, uuid in uuids.items()}, name
        throttle = prometheus.query(f'sacred_gpu_throttle_reason{{run_id="{run_id}", gpu="0"}}')
        assert {"software power cap", "hardware slowdown"} <= {s["metric"]["reason"] for s in throttle}
        for name in ("sacred_host_cpu_utilization_ratio", "sacred_host_memory_used_bytes",
                     "sacred_process_resident_memory_bytes", "sacred_run_heartbeat_age_seconds"):
            [series] = prometheus.query(f'{name}{{run_id="{run_id}"}}')
            assert series["metric"]["host"] == host and series["metric"]["experiment"] == "prom_exp", name
        [loss] = prometheus.query(f'sacred_run_metric_last{{run_id="{run_id}", metric="loss"}}')
        assert float(loss["value"][1]) == pytest.approx(1 / 3)
        [memory] = prometheus.query(f'sacred_gpu_memory_total_bytes{{run_id="{run_id}", gpu="1"}}')
        assert float(memory["value"][1]) == two_gpus()[1].memory_total_bytes

        # the dashboard: its variables' queries, then every panel's expression for the run and its loss
        assert run_id in prometheus.api("label/run_id/values", **{"match[]": "sacred_run_info"})
        metrics = prometheus.api("label/metric/values", **{"match[]": f'sacred_run_metric_last{{run_id=~"{run_id}"}}'})
        assert "loss" in metrics
        expressions = dashboard_expressions({"run": re.escape(run_id), "metric": "loss"})
        assert len(expressions) >= 15
        for title, expr in expressions:
            assert prometheus.query(expr), f"{title}: {expr} has no data"
        run.finish()
        # a finished run leaves the exposition: Prometheus marks its series stale at the next scrape
        prometheus.wait_for("sacred_runs_running == 0")
        assert prometheus.query(f'sacred_run_info{{run_id="{run_id}"}}') == []
        assert prometheus.query(f'sacred_gpu_utilization_ratio{{run_id="{run_id}"}}') == []
