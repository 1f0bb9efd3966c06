"""sacred-board runs table: server time and bytes to deliver one page of 50 rows from a 100,000-run database.

    python benchmarks/board_page.py [--runs 100000] [--repeat 5] [--budget 60] [--timeout 120]

Builds a mongomock database of ``--runs`` runs shaped as GpuMongoObserver writes it: run documents with Sacred's
fields (experiment, host, meta, config, captured_out, ...), varied statuses (COMPLETED, FAILED, INTERRUPTED, TIMEOUT,
QUEUED, RUNNING with fresh and stale heartbeats, i.e. PROBABLY_DEAD), Omniboard tags and notes on some runs, a few
config keys (lr, batch_size, optim.name, ...), the ``system`` roll-ups (the keys ``SystemWindow.document()`` writes)
and the ``metric_rollups`` of 5 metrics, plus the Sacred-format metric documents. As the observer writes them, QUEUED
runs and runs that failed before their first heartbeat have no series and no ``metric_rollups`` field. The series
are short (10 points, one list shared by all documents, loaded into mongomock's store directly as
benchmarks/store_table.py does): the runs table reads no series, only the stored roll-ups, so their length does not
change what it costs where roll-ups are stored (store_table.py checks that). The table is given 3 metric columns
(val_loss min, val_acc max, loss last), saved in the database as the board saves them.

Then serves it through the real server path: ``create_app(Board(store))`` and Flask's test client. It loads the page
once as the browser does (``GET /``, ``/_dash-layout``, ``/_dash-dependencies`` and the route callback that builds
the runs page: timed once, not part of the target), takes the ``runs-spec`` data from that layout and the filters
from the page's filter callback, and POSTs to ``/_dash-update-component?endId=...`` the body the renderer sends for
the grid's ``getRowsRequest`` callback (format captured from Chromium driving the board; built from
``/_dash-dependencies`` so that a changed callback signature fails here instead of being mis-measured). Cases, 50 rows
each (startRow..endRow; the board's own grid asks blocks of 100):
- first page (rows 0-50, default sort: newest first);
- deep page (rows 50,000-50,050; half of ``--runs``);
- sorted by a metric roll-up column (``val_loss.min`` ascending);
- filtered with the query language (``status == COMPLETED and config.lr < 0.01 and val_loss.min < 0.5`` typed in
  the query box);
- filtered with the status quick filter (COMPLETED: a filter without a metric condition).
Each: median and max of ``--repeat`` requests (fewer once they took ``--budget`` seconds); a call running past
``--timeout`` seconds is stopped (an alarm) and reported as ``> TIMEOUT``. Beside it, the callback's parts timed
directly with the same arguments: ``store.runs`` (the page), ``store.count`` (the filter's matches: the callback
counts them whenever a block comes back full) and the rows' JSON (``columns.rows``); the rest is Dash and Flask.
Bytes: the HTTP response body per page as sent, and its gzip size (level 6, flask-compress's default); the body is
compressed only when Dash's ``compress`` is on (it needs flask-compress): the output says which applies.
Building the database is not timed (about 15 s and 2.5 GB for 100,000 runs). Its objects are then frozen out of
CPython's garbage collector (``gc.freeze``): a MongoDB server holds them in another process, while here every full
collection during a request would walk them (seconds, at random).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import gzip
import json
import random
import signal
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mongomock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.store_table import load_directly  # noqa: E402
from dashboard import columns as cols  # noqa: E402
from dashboard.app import create_app  # noqa: E402
from dashboard.board import Board  # noqa: E402
from dashboard import runs_layout  # noqa: E402
from dashboard.pages import runs as runs_page  # noqa: E402
from sacred_gpu import connection, schema  # noqa: E402
from sacred_gpu.read import MetricColumn, RunStore, connect  # noqa: E402

METRICS = ("loss", "val_loss", "acc", "val_acc", "lr")
COLUMNS = (MetricColumn("val_loss", "min"), MetricColumn("val_acc", "max"), MetricColumn("loss", "last"))
POINTS = 10
PAGE = 50
FILTER = "status == COMPLETED and config.lr < 0.01 and val_loss.min < 0.5"
#: Status of a run and its share of the database; RUNNING runs get a stale heartbeat (PROBABLY_DEAD) half the time.
STATUSES = (("COMPLETED", 0.70), ("FAILED", 0.12), ("INTERRUPTED", 0.06), ("RUNNING", 0.04), ("TIMEOUT", 0.03),
            ("QUEUED", 0.05))
TAG_SETS = ((), (), (), ("baseline",), ("sweep-lr",), ("sweep-lr", "bf16"), ("ablation", "no-dropout"), ("debug",))
GPU = "NVIDIA H100 80GB HBM3"
EXPERIMENTS = ("resnet50-imagenet", "vit-b16", "gpt2-small", "unet-seg", "bert-base-ft", "yolo-det", "mlp-mnist")


def _system(rng: random.Random, gpus: int) -> dict[str, Any]:
    """The run document's ``system`` field, with the keys ``SystemWindow.document()`` writes."""
    per_gpu = []
    for index in range(gpus):
        per_gpu.append({"index": index, "name": GPU, "mem_peak_mib": round(rng.uniform(2e3, 8e4), 3),
                        "util_mean_pct": round(rng.uniform(5, 99), 3), "power_mean_w": round(rng.uniform(80, 700), 3),
                        "energy_wh": round(rng.uniform(1, 5000), 3), "temp_max_c": round(rng.uniform(40, 85), 3),
                        "proc_mem_peak_mib": round(rng.uniform(1e3, 7.9e4), 3)})
    return {"samples": rng.randint(10, 86_400), "gpu_count": gpus, "gpus": per_gpu, "gpu_model": per_gpu[0]["name"],
            "gpu_mem_peak_mib": max(g["mem_peak_mib"] for g in per_gpu),
            "gpu_util_mean_pct": round(sum(g["util_mean_pct"] for g in per_gpu) / gpus, 3),
            "gpu_energy_wh": round(sum(g["energy_wh"] for g in per_gpu), 3),
            "gpu_power_mean_w": round(sum(g["power_mean_w"] for g in per_gpu), 3),
            "proc_rss_peak_mib": round(rng.uniform(1e3, 6e4), 3), "proc_cpu_mean_pct": round(rng.uniform(50, 800), 3),
            "cpu_util_mean_pct": round(rng.uniform(5, 90), 3), "mem_used_peak_mib": round(rng.uniform(1e4, 5e5), 3)}


def _rollups(rng: random.Random, steps: int) -> dict[str, dict[str, Any]]:
    """``metric_rollups`` of the run's 5 metrics (``{count, sum, mean, first, first_step, last, last_step, min,
    min_step, max, max_step}`` each), with plausible values: losses fall, accuracies rise."""
    rollups = {}
    for name in METRICS:
        if "loss" in name:
            first, low = rng.uniform(2.0, 7.0), rng.uniform(0.02, 2.0)
            last, high = low * rng.uniform(1.0, 1.2), first
        elif "acc" in name:
            first, high = rng.uniform(0.0, 0.2), rng.uniform(0.3, 0.99)
            last, low = high * rng.uniform(0.95, 1.0), first
        else:
            first = high = rng.choice((0.1, 0.01, 0.003, 0.001))
            last = low = first * 0.01
        mean = (low + high) / 2
        rollups[schema.rollup_key(name)] = {"count": steps, "sum": mean * steps, "mean": mean, "first": first,
                                           "first_step": 0, "last": last, "last_step": steps - 1, "min": low,
                                           "min_step": rng.randrange(steps), "max": high,
                                           "max_step": rng.randrange(steps)}
    return rollups


def build(runs: int, seed: int = 0) -> mongomock.MongoClient:
    """A mongomock client whose database ``sacred`` holds ``runs`` runs shaped as GpuMongoObserver writes them
    (see the module docstring), loaded into mongomock's store directly."""
    client = connection.open_client(client=mongomock.MongoClient())
    db = client["sacred"]
    rng = random.Random(seed)
    origin = dt.datetime(2025, 1, 1)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    spacing = (now - origin) / max(runs, 1)
    steps, values = list(range(POINTS)), [1.0 / (i + 1) for i in range(POINTS)]
    stamps = [origin + dt.timedelta(seconds=i) for i in range(POINTS)]
    captured = "".join(f"epoch {i}: loss 0.{i:04d}\n" for i in range(60))
    experiments = [{"name": name, "base_dir": f"/home/alice/{name}", "mainfile": "train.py",
                    "sources": [["train.py", schema.new_object_id()]],
                    "dependencies": ["sacred==0.8.7", "torch==2.6.0"],
                    "repositories": [{"url": "git@example.org:ml/train.git", "commit": "0" * 40, "dirty": False}]}
                   for name in EXPERIMENTS]
    hosts = [{"hostname": f"gpu-node{i:02d}", "os": ["Linux", "Linux-6.8.0-x86_64-with-glibc2.39"],
              "python_version": "3.12.3", "cpu": "AMD EPYC 9654 96-Core Processor",
              "gpus": {"driver_version": "570.124.06", "gpus": [{"model": GPU, "total_memory": 81559,
                                                                 "persistence_mode": False}] * 2},
              "ENV": {}} for i in range(16)]
    names, weights = zip(*STATUSES)
    run_docs, metric_docs = [], []
    for run_id in range(1, runs + 1):
        status = rng.choices(names, weights)[0]
        began = origin + spacing * run_id
        gpus = rng.choice((1, 2, 2, 4, 8))
        config = {"lr": rng.choice((0.1, 0.03, 0.01, 0.003, 0.001, 0.0003)),
                  "batch_size": rng.choice((32, 64, 128, 256)),
                  "epochs": rng.choice((10, 30, 90)), "seed": rng.randrange(2**31),
                  "optim": {"name": rng.choice(("adam", "adamw", "sgd")), "beta": 0.9, "weight_decay": 1e-4},
                  "model": {"layers": [64, 32], "dropout": rng.choice((0.0, 0.1, 0.3))}}
        doc: dict[str, Any] = {
            "_id": run_id, "experiment": experiments[run_id % len(experiments)],
            "command": "main", "host": hosts[run_id % len(hosts)], "status": status, "config": config,
            "meta": {"command": "main", "options": {"--name": None, "--comment": None, "UPDATE": [], "with": True}},
            "resources": [], "artifacts": [], "captured_out": "", "info": {}, "result": None,
        }
        early = status == "FAILED" and rng.random() < 0.2  # crashed before its first heartbeat: no metrics yet
        if status == "QUEUED":
            doc["queue_time"] = began
        elif early:
            doc.update({"format": schema.FORMAT, "start_time": began, "heartbeat": None,
                        "stop_time": began + dt.timedelta(seconds=20), "fail_trace": ["Traceback (most recent call last):\n", "FileNotFoundError: data/train\n"]})
        else:
            refs = []
            for name in METRICS:
                metric_id = schema.new_object_id()
                refs.append({"name": name, "id": str(metric_id)})
                metric_docs.append({"_id": metric_id, "run_id": run_id, "name": name, "steps": steps,
                                    "values": values, "timestamps": stamps})
            length = dt.timedelta(minutes=rng.uniform(2, 3000))
            doc.update({"format": schema.FORMAT, "start_time": began, "heartbeat": began + length,
                        "captured_out": captured, "info": {"metrics": refs}, schema.SYSTEM_FIELD: _system(rng, gpus),
                        schema.METRIC_ROLLUPS_FIELD: _rollups(rng, rng.randint(POINTS, 50_000))})
            if status == "RUNNING":
                doc["heartbeat"] = now - dt.timedelta(seconds=rng.choice((5, 3600)))  # fresh or PROBABLY_DEAD
            else:
                doc["stop_time"] = doc["heartbeat"]
            if status == "COMPLETED":
                doc["result"] = doc[schema.METRIC_ROLLUPS_FIELD]["val_acc"]["max"]
            elif status == "FAILED":
                doc["fail_trace"] = ["Traceback (most recent call last):\n", "RuntimeError: CUDA out of memory\n"]
        tags = rng.choice(TAG_SETS)
        if tags or rng.random() < 0.05:
            doc["omniboard"] = {"tags": list(tags)}
            if rng.random() < 0.2:
                doc["omniboard"]["notes"] = f"run {run_id}: lr {config['lr']}, see the sweep's report"
        run_docs.append(doc)
    load_directly(db.runs, run_docs)
    load_directly(db.metrics, metric_docs)
    store = connect(client=client)
    store.save_metric_columns(COLUMNS)
    return client


# -- the server path ------------------------------------------------------------------------------------------------
class Browser:
    """Talks to the board as the browser does: Flask's test client, the renderer's headers, ``endId`` token and
    callback bodies, built from ``/_dash-dependencies`` as the renderer builds them."""

    HEADERS = {"Accept": "application/json", "Content-Type": "application/json",
               "Accept-Encoding": "gzip"}  # the browser also offers br and zstd; gzip is measured

    def __init__(self, store: RunStore) -> None:
        self.app = create_app(Board(store))
        self.client = self.app.server.test_client()
        self.url = "/_dash-update-component"
        self.dependencies: list[dict] = []
        self.encoding = ""

    def load(self, timeout: float) -> tuple[Timing, int, dict]:
        """Load the page as the browser does; returns the route callback's timing, its body's bytes, and the
        ``runs-spec`` data the browser then holds."""
        index = self.client.get("/", headers={"Accept": "text/html"})
        assert index.status_code == 200, index.status_code
        html = index.get_data(as_text=True)
        config = html.split('<script id="_dash-config" type="application/json">', 1)[1].split("</script>")[0]
        end_id = json.loads(config).get("end_id")
        if end_id:
            self.url += f"?endId={end_id}"
        assert self.client.get("/_dash-layout").status_code == 200
        self.dependencies = self.client.get("/_dash-dependencies").get_json()
        route = self.dependency(output="board-page.children")
        location = {"board-url.pathname": "/", "board-url.search": "", "board-url.hash": "",
                    "board-url.href": "http://localhost/"}
        data = json.dumps(callback_body(route, location, [key for key in location if any(
            key == f"{item['id']}.{item['property']}" for item in route["inputs"])]))
        # the layout reads nothing; the page's load callback (fired once the layout is in) reads its columns
        loaded, tick, spec_id = f"{runs_layout.LOADED}.data", f"{runs_layout.TICK}.n_intervals", f"{runs_page.SPEC}.data"
        load = self.dependency(output=spec_id, trigger=loaded)
        load_data = json.dumps(callback_body(load, {loaded: True, tick: None, spec_id: None}, [loaded]))
        timing = repeated(lambda: (self.send(data), self.send(load_data))[1], 1, 0, timeout)
        body, payload = self.read(timing.result if timing.result is not None else self.send(load_data))
        spec = payload["response"][runs_page.SPEC]["data"]
        return timing, len(body), spec

    def dependency(self, *, output: str | None = None, trigger: str | None = None) -> dict:
        """The callback whose outputs include ``output`` and whose inputs include ``trigger`` (``id.property``;
        either may be left out)."""
        for dependency in self.dependencies:
            outputs = [item.split("@")[0] for item in dependency["output"].strip(".").split("...")]
            inputs = [f"{item['id']}.{item['property']}" for item in dependency["inputs"]]
            if (output is None or output in outputs) and (trigger is None or trigger in inputs):
                return dependency
        raise LookupError(f"no callback with output {output} and input {trigger}")

    def typed_filter(self, status: str, text: str) -> str:
        """``runs-filter.data`` after picking ``status`` in the quick filter or typing ``text`` in the query box
        (the page's own filter callback)."""
        query, quick = f"{runs_page.QUERY}.value", f"{runs_page.STATUS}.value"
        dependency = self.dependency(output=f"{runs_page.FILTER}.data", trigger=query)
        changed = [query] if text else [quick]
        _, payload = self.post(callback_body(dependency, {quick: status, query: text or None}, changed))
        response = payload["response"]
        assert not response.get(runs_page.QUERY_ERROR, {}).get("children"), response
        return response[runs_page.FILTER]["data"]

    def rows_body(self, request: dict, filter_text: str, spec: dict) -> dict:
        """The body the renderer POSTs for the grid's ``getRowsRequest`` (as captured from Chromium)."""
        trigger = f"{runs_page.GRID}.getRowsRequest"
        return callback_body(self.dependency(trigger=trigger),
                             {trigger: {**request, "api": {}}, f"{runs_page.FILTER}.data": filter_text,
                              f"{runs_page.SPEC}.data": spec}, [trigger])

    def post(self, body: dict) -> tuple[bytes, dict]:
        """POST one callback; returns the body as sent and it parsed."""
        return self.read(self.send(json.dumps(body)))

    def send(self, data: str) -> Any:
        """POST a callback's JSON and read the whole response (what is timed)."""
        response = self.client.post(self.url, data=data, headers=self.HEADERS)
        response.get_data()
        return response

    def read(self, response: Any) -> tuple[bytes, dict]:
        """The body as sent and parsed; records how it was encoded."""
        sent = response.get_data()
        assert response.status_code == 200, (response.status_code, sent[:500])
        self.encoding = response.headers.get("Content-Encoding", "")
        assert self.encoding in ("", "gzip"), f"cannot read a {self.encoding} body"
        return sent, json.loads(gzip.decompress(sent) if self.encoding == "gzip" else sent)


def callback_body(dependency: dict, values: dict[str, Any], changed: list[str]) -> dict:
    """The renderer's body for one callback: ``output`` as listed, ``outputs`` (a list for several), ``inputs``
    and ``state`` with the values in ``values`` by ``id.property`` (``value`` left out where None, as the renderer
    does for unset properties), ``changedPropIds``."""
    output = dependency["output"]
    if output.startswith(".."):
        outputs: Any = [dict(zip(("id", "property"), item.split(".", 1))) for item in output.strip(".").split("...")]
    else:
        outputs = dict(zip(("id", "property"), output.split(".", 1)))

    def filled(items: list[dict]) -> list[dict]:
        result = []
        for item in items:
            key = f"{item['id']}.{item['property']}"
            if key not in values:
                raise KeyError(f"callback {output} now reads {key}: teach the benchmark its value")
            result.append({"id": item["id"], "property": item["property"],
                           **({"value": values[key]} if values[key] is not None else {})})
        return result

    body = {"output": output, "outputs": outputs, "inputs": filled(dependency["inputs"]),
            "changedPropIds": changed, "parsedChangedPropsIds": changed}
    if dependency.get("state"):
        body["state"] = filled(dependency["state"])
    return body


def _find_prop(tree: Any, component_id: str, prop: str) -> Any:
    """A property of the component with ``component_id`` in a serialised layout."""
    if isinstance(tree, list):
        for item in tree:
            found = _find_prop(item, component_id, prop)
            if found is not None:
                return found
    elif isinstance(tree, dict):
        props = tree.get("props") or {}
        if props.get("id") == component_id:
            return props.get(prop)
        return _find_prop(props.get("children"), component_id, prop)
    return None


# -- measuring -------------------------------------------------------------------------------------------------------
class Stopped(BaseException):
    """Raised by the alarm in a call that passes ``--timeout`` (a BaseException: nothing on the server path
    catches it)."""


def _ring(signum: int, frame: Any) -> None:
    raise Stopped


@dataclass
class Timing:
    """Seconds of the calls made, whether the last was stopped at the timeout, and the last call's result."""

    durations: list[float] = field(default_factory=list)
    stopped: bool = False
    result: Any = None

    def median(self) -> float | None:
        return statistics.median(self.durations) if self.durations and not self.stopped else None

    def show(self, timeout: float, which: str = "median", digits: int = 3) -> str:
        if self.stopped and (which == "max" or not self.durations):
            return f"> {timeout:.0f}"
        if not self.durations:
            return "n/a"
        value = statistics.median(self.durations) if which == "median" else max(self.durations)
        return f"{value:.{digits}f}"


def repeated(action: Any, repeat: int, budget: float, timeout: float) -> Timing:
    """``action()`` run up to ``repeat`` times, fewer (at least once) once they took ``budget`` seconds; a call
    stopped after ``timeout`` seconds ends the repeats."""
    timing = Timing()
    previous = signal.signal(signal.SIGALRM, _ring)
    try:
        while len(timing.durations) < repeat and sum(timing.durations) <= budget:
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                started = time.perf_counter()
                result = action()
                seconds = time.perf_counter() - started
            except Stopped:
                timing.stopped = True
                break
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            timing.durations.append(seconds)
            timing.result = result
    finally:
        signal.signal(signal.SIGALRM, previous)
    return timing


def measure(browser: Browser, store: RunStore, name: str, request: dict, filter_text: str, spec: dict,
            args: argparse.Namespace) -> dict[str, Any]:
    """One case: the HTTP request, then the callback's parts timed directly with the same arguments."""
    limits = (args.repeat, args.budget, args.timeout)
    data = json.dumps(browser.rows_body(request, filter_text, spec))
    http = repeated(lambda: browser.send(data), *limits)
    metrics, custom = cols.from_spec(spec)
    arguments = {"sort": cols.sort_argument(request.get("sortModel")), "skip": request["startRow"],
                 "limit": request["endRow"] - request["startRow"], "metrics": cols.metric_request(metrics),
                 "columns": [c.path for c in custom]}
    runs = repeated(lambda: store.runs(filter_text or None, **arguments), *limits)
    count = repeated(lambda: store.count(filter_text or None), *limits)
    to_json = repeated(lambda: cols.rows(runs.result), *limits) if runs.result is not None else Timing()
    result: dict[str, Any] = {"case": name, "http": http, "runs": runs, "count": count, "json": to_json, "sent": None}
    if runs.result is not None:
        result["blank"] = int(runs.result[[c.key for c in metrics]].isna().all(axis=1).sum())
    if http.result is not None:
        sent, payload = browser.read(http.result)
        response = payload["response"]
        assert not response.get(runs_page.ROWS_STATUS, {}).get("children"), response.get(runs_page.ROWS_STATUS)
        rows = response[runs_page.GRID]["getRowsResponse"]
        text = gzip.decompress(sent) if browser.encoding == "gzip" else sent
        result.update(sent=len(sent), gzip=len(gzip.compress(text, 6)), data=rows["rowData"], total=rows["rowCount"])
        if to_json.result is not None:
            assert [row["id"] for row in rows["rowData"]] == [row["id"] for row in to_json.result], \
                f"{name}: the HTTP response has other rows than store.runs"
        if count.result is not None:
            assert rows["rowCount"] == count.result, f"{name}: rowCount {rows['rowCount']} != {count.result}"
        check(result, [c.key for c in metrics])
    return result


def check(result: dict[str, Any], keys: list[str]) -> None:
    """The rows are what the case asks for: a full page, the metric columns present, sorted or filtered."""
    data = result["data"]
    assert len(data) == PAGE, f"{result['case']}: {len(data)} rows"
    assert all(key in row for row in data for key in keys), f"{result['case']}: metric columns missing"
    if result["case"].startswith("sorted"):
        values = [row["val_loss.min"] for row in data if row["val_loss.min"] is not None]
        assert values == sorted(values), "not sorted by val_loss.min"
    if result["case"].startswith("query"):
        assert all(row["status"] == "COMPLETED" and row["config.lr"] < 0.01 and row["val_loss.min"] < 0.5
                   for row in data), "a row does not match the filter"
    if result["case"].startswith("status"):
        assert all(row["status"] == "COMPLETED" for row in data), "a row does not match the filter"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--budget", type=float, default=60.0,
                        help="seconds after which a measurement stops repeating (each is made at least once)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds after which one call is stopped and reported as '> TIMEOUT'")
    args = parser.parse_args()
    began = time.perf_counter()
    client = build(args.runs)
    store = connect(client=client)
    built = time.perf_counter() - began
    # The database lives in this process (mongomock): freeze its millions of objects out of the garbage collector,
    # whose full collections would otherwise walk them during the requests (a MongoDB server is another process).
    gc.collect()
    gc.freeze()
    documents = list(store.database.runs._store.documents)
    statuses = Counter(doc["status"] for doc in documents)
    without = sum(1 for doc in documents if schema.METRIC_ROLLUPS_FIELD not in doc)
    tagged = sum(1 for doc in documents if (doc.get("omniboard") or {}).get("tags"))
    del documents
    print(f"database: {args.runs:,} runs, {store.database.metrics.estimated_document_count():,} metric documents "
          f"(built in {built:.0f} s, not timed)")
    print(f"  {', '.join(f'{status} {n:,}' for status, n in statuses.most_common())}; {tagged:,} tagged; "
          f"{without:,} without metric roll-ups (QUEUED, or failed before a heartbeat), the others with "
          f"{len(METRICS)} series of {POINTS} points")

    browser = Browser(store)
    load, load_bytes, spec = browser.load(args.timeout)
    keys = [f"{metric}.{rollup}" for metric, rollup, *_ in spec["metrics"]]
    assert len(keys) == 3, spec
    print(f"page load (the route callback that builds the runs page, once, not in the target): "
          f"{load.show(args.timeout, digits=2)} s, {load_bytes:,} bytes; metric columns {', '.join(keys)}")
    typed = browser.typed_filter("", FILTER)
    completed = browser.typed_filter("COMPLETED", "")
    print(f"filters as the page's filter callback hands them to the grid: query box {FILTER!r} -> {typed!r}; "
          f"status quick filter COMPLETED -> {completed!r}")

    deep = min(50_000, args.runs // 2)
    newest: list[dict] = []
    by_val_loss = [{"sort": "asc", "type": "default", "colId": "val_loss.min"}]
    cases = [("first page (0-50, newest first)", 0, newest, ""),
             (f"deep page ({deep:,}-{deep + PAGE:,})", deep, newest, ""),
             ("sorted by val_loss.min asc", 0, by_val_loss, ""),
             ("query: status, config.lr, val_loss", 0, newest, typed),
             ("status == COMPLETED (quick filter)", 0, newest, completed)]
    print(f"\nPOST /_dash-update-component, getRowsRequest of {PAGE} rows: median and max of up to {args.repeat} "
          f"(fewer past {args.budget:.0f} s; one call stopped at {args.timeout:.0f} s);\nthe callback's parts timed "
          "directly with the same arguments (medians); seconds")
    header = (f"{'case':<35} {'n':>2} {'median':>8} {'max':>8} {'store.runs':>10} {'store.count':>11} "
              f"{'rows json':>9} {'rest':>6} {'rowCount':>8} {'body B':>7} {'gzip B':>7}")
    print(header)
    print("-" * len(header))
    results = []
    for name, start, sort_model, filter_text in cases:
        request = {"startRow": start, "endRow": start + PAGE, "sortModel": sort_model, "filterModel": {}}
        result = measure(browser, store, name, request, filter_text, spec, args)
        results.append(result)
        parts = [result[part].median() for part in ("http", "runs", "count", "json")]
        rest = f"{parts[0] - sum(parts[1:]):.3f}" if None not in parts else "n/a"
        total = f"{result['total']:,}" if result["sent"] else "n/a"
        sent = (f"{result['sent']:,}", f"{result['gzip']:,}") if result["sent"] else ("n/a", "n/a")
        print(f"{name:<35} {len(result['http'].durations) + result['http'].stopped:>2} "
              f"{result['http'].show(args.timeout):>8} {result['http'].show(args.timeout, 'max'):>8} "
              f"{result['runs'].show(args.timeout):>10} {result['count'].show(args.timeout):>11} "
              f"{result['json'].show(args.timeout, digits=4):>9} {rest:>6} {total:>8} {sent[0]:>7} {sent[1]:>7}",
              flush=True)
    print("rest: Dash and Flask around the callback (median - store.runs - store.count - rows json). store.count is "
          "part of every request here:\na full block makes the callback count the filter's matches.")
    for result in results:
        if result.get("blank"):
            print(f"note: {result['case']}: {result['blank']} of {PAGE} rows have no metric roll-ups "
                  "(QUEUED, or failed before a heartbeat)")
    compressed = browser.encoding == "gzip"
    print("bytes: " + ("sent gzip-compressed (Content-Encoding: gzip)" if compressed else
                       "sent uncompressed: Dash's compress is off (create_app does not turn it on; flask-compress "
                       f"{'is' if _has_flask_compress() else 'is not'} installed); gzip B = what gzip -6 would send"))
    print()
    for result in results:
        median = result["http"].median()
        shown = f"{median:.2f} s" if median is not None else f"> {args.timeout:.0f} s (stopped)"
        verdict = "MET" if median is not None and median < 1.0 else "NOT MET"
        print(f"page of {PAGE} rows, {len(keys)} metric columns, {args.runs:,} runs: median {shown} "
              f"(target < 1 s: {verdict}) [{result['case']}]")
    measured = [result for result in results if result["sent"]]
    if measured:
        first = measured[0]
        print(f"bytes per page: {first['sent']:,} (gzip {first['gzip']:,}) [{first['case']}; "
              f"{'compressed' if compressed else 'uncompressed'} as sent]")
    else:
        print("bytes per page: n/a (no request finished within --timeout)")
    print(f"total time {time.perf_counter() - began:.0f} s")
    return 0


def _has_flask_compress() -> bool:
    try:
        import flask_compress  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
