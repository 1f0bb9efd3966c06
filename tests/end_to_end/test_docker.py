"""Static checks of docker/: the compose file, the Dockerfile and the build context (no Docker engine needed)."""

from __future__ import annotations

import configparser
import importlib.util
import json
import re
import shlex
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml  # PyYAML

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


def _load_healthcheck() -> Any:
    """docker/healthcheck.py by path: `import docker` would find docker-py where it is installed."""
    spec = importlib.util.spec_from_file_location("sacred_board_healthcheck", DOCKER / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = _load_healthcheck()


# --- readers -------------------------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    result, pending = [], ""
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """{container path: source} of a service's short-syntax volumes."""
    return {volume.split(":")[1]: volume.split(":")[0] for volume in service.get("volumes", [])}


def arguments(keyword: str) -> list[str]:
    return [args for name, args in instructions() if name == keyword]


def exec_form(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def env() -> dict[str, str]:
    """ENV values (``KEY=value`` pairs)."""
    values: dict[str, str] = {}
    for args in arguments("ENV"):
        values.update(pair.split("=", 1) for pair in shlex.split(args))
    return values


def dockerignored(path: str) -> bool:
    """Whether .dockerignore leaves ``path`` (relative to the root) out of the build context, as Docker matches:
    a pattern matches the path or one of its parents, ``**`` any number of folders, the last match wins."""
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        parts = path.strip("/").split("/")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            ignored = not negated
    return ignored


# --- compose -------------------------------------------------------------------------------------------------------


def test_mongo_keeps_data_in_a_named_volume_and_has_a_healthcheck() -> None:
    spec = compose()
    mongo = spec["services"]["mongo"]
    assert mounts(mongo)["/data/db"] in spec["volumes"]
    assert mongo["healthcheck"]["test"]


def test_board_and_trainer_wait_for_a_healthy_mongo() -> None:
    services = compose()["services"]
    for name in ("board", "trainer"):
        assert services[name]["depends_on"]["mongo"]["condition"] == "service_healthy", name


def test_every_published_port_is_bound_to_localhost() -> None:
    published = 0
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", f"{name}: {port}"
            published += 1
    assert published >= 2  # MongoDB and the board


def test_board_reads_the_mongo_service() -> None:
    services = compose()["services"]
    board = services["board"]
    uri = urlsplit(board["environment"]["SACRED_BOARD_MU"])
    assert uri.scheme == "mongodb" and uri.hostname in services and uri.port == 27017
    assert uri.path.strip("/") == "sacred"
    assert "127.0.0.1:9000:9000" in board["ports"]
    assert "${SACRED_BOARD_AUTH" in board["environment"]["SACRED_BOARD_AUTH"]  # from the host, never in the file


def test_trainer_reserves_gpus_only_in_its_profile() -> None:
    services = compose()["services"]
    trainer = services["trainer"]
    assert trainer["profiles"]
    assert {name for name, service in services.items() if not service.get("profiles")} == {"mongo", "board"}
    devices = trainer["deploy"]["resources"]["reservations"]["devices"]
    assert any(device["driver"] == "nvidia" and "gpu" in device["capabilities"] for device in devices)
    script, flag, target = trainer["command"][1:4]
    assert (ROOT / script).is_file() and flag == "-g"
    assert urlsplit(target).hostname in services and urlsplit(target).path.strip("/") == "sacred"


def test_trainer_journals_into_a_named_volume() -> None:
    spec = compose()
    assert mounts(spec["services"]["trainer"])[env()["SACRED_GPU_SPOOL"]] in spec["volumes"]


def test_monitoring_profile_scrapes_the_board_and_provisions_grafana() -> None:
    """Prometheus scrapes the board's /metrics; Grafana gets the data source the dashboard's panels name and the
    dashboard itself; every monitoring service has a healthcheck and a named volume where it keeps data."""
    spec = compose()
    services = spec["services"]
    for name in ("prometheus", "grafana", "dcgm-exporter", "node-exporter"):
        assert services[name]["profiles"] and services[name]["healthcheck"]["test"], name
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert mounts(prometheus)["/prometheus"] in spec["volumes"]
    assert mounts(grafana)["/var/lib/grafana"] in spec["volumes"]
    config = yaml.safe_load((DOCKER / mounts(prometheus)["/etc/prometheus/prometheus.yml"]).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    [target] = jobs["sacred-board"]["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert jobs["sacred-board"]["metrics_path"] == "/metrics" and host == "board"
    assert f"127.0.0.1:{port}:{port}" in services["board"]["ports"]
    for job, service in (("dcgm-exporter", "dcgm-exporter"), ("node-exporter", "node-exporter")):
        assert jobs[job]["static_configs"][0]["targets"][0].split(":")[0] == service
    provisioning = DOCKER / mounts(grafana)["/etc/grafana/provisioning"]
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus" and urlsplit(source["url"]).hostname == "prometheus"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "sacred-gpu.yml").read_text())["providers"]
    dashboards = DOCKER / mounts(grafana)[provider["options"]["path"]]
    dashboard = json.loads((dashboards / "sacred-gpu.json").read_text())
    uids = {panel["datasource"]["uid"] for panel in dashboard["panels"] if "datasource" in panel}
    assert uids == {source["uid"]}
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].startswith(provider["options"]["path"])


def test_images_build_from_the_repository_root_with_the_dockerfile() -> None:
    for name in ("board", "trainer"):
        build = compose()["services"][name]["build"]
        context = (DOCKER / build["context"]).resolve()
        assert context == ROOT and (context / build["dockerfile"]).resolve() == DOCKER / "Dockerfile", name


# --- Dockerfile ----------------------------------------------------------------------------------------------------


def test_dockerfile_installs_the_package_and_git() -> None:
    assert arguments("FROM") == ["python:3.11-slim"]
    runs = " ".join(arguments("RUN"))
    assert re.search(r'pip install --no-cache-dir "\.\[[^]]*\bboard\b[^]]*\]"', runs)
    assert re.search(r"apt-get install [^&;]*\bgit\b", runs)  # Sacred will not start a run without git


def test_dockerfile_runs_as_a_user_of_its_own() -> None:
    names = [name for name, _ in instructions()]
    users = arguments("USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert names.index("USER") < names.index("CMD")


def test_dockerfile_serves_the_board_with_gunicorn_on_9000() -> None:
    assert arguments("EXPOSE") == ["9000"]
    (cmd,) = arguments("CMD")
    command = exec_form(cmd)
    assert command[0] == "gunicorn" and command[-1] == "dashboard.wsgi:server"
    assert command[command.index("--bind") + 1] == "0.0.0.0:9000"
    assert "--preload" not in command  # one MongoDB client per worker, opened after the fork
    (check,) = arguments("HEALTHCHECK")
    assert "127.0.0.1:9000" in check


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    sources = []
    for args in arguments("COPY") + arguments("ADD"):
        words = [word for word in exec_form(args) if not word.startswith("--")]
        sources += words[:-1]
    assert sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), source
        files = [path] if path.is_file() else [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
        for file in files:
            assert not dockerignored(str(file.relative_to(ROOT))), f"{file} is left out by .dockerignore"


def test_build_context_leaves_out_local_state() -> None:
    for path in (".git/config", ".venv/bin/python", "docker/.env", "sacred_gpu/__pycache__/x.pyc", "out/a"):
        assert dockerignored(path), path
    assert not dockerignored("sacred_gpu/observer.py")


def test_the_installed_extras_and_the_wsgi_module_exist() -> None:
    runs = " ".join(arguments("RUN"))
    extras = re.search(r'"\.\[([^]]*)\]"', runs).group(1).split(",")
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    declared = config["options.extras_require"]
    assert all(extra in declared for extra in extras), extras
    assert "gunicorn" in declared["board"]
    module, _, _ = exec_form(arguments("CMD")[0])[-1].partition(":")
    assert (ROOT / (module.replace(".", "/") + ".py")).is_file()


# --- healthcheck ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Any:
    """A local HTTP server answering GET /<status> with that status."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(int(self.path.strip("/")))
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (302, True), (401, True), (500, False), (503, False)])
def test_healthcheck_accepts_any_answer_below_500(server: str, status: int, healthy: bool) -> None:
    assert (healthcheck.check(f"{server}/{status}", timeout=2) == 0) is healthy


def test_healthcheck_fails_when_nothing_listens() -> None:
    with HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        port = closed.server_port
    assert healthcheck.check(f"http://127.0.0.1:{port}/", timeout=2) == 1
