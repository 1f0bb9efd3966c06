"""Pure functions that build the sections of a run's page from the run document and its row of ``RunStore.runs``:
the header, trees of nested values (config, meta, info, environment), the host with its GPUs, the experiment, the
fail trace. Data in, components out; every string from the database goes in as text.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from dash import dcc, html

#: Nodes a tree shows before it says how many it left out.
TREE_NODES = 3000
#: Characters of one value a tree shows.
VALUE_CHARS = 2000
_DIRTY = {True: "yes (uncommitted changes)", False: "no"}


def as_text(value: Any) -> str:
    """A value as the text a person reads: JSON for numbers, strings, lists and dicts, ``str`` for the rest."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        text = str(value)
    if len(text) <= VALUE_CHARS:
        return text
    return f"{text[:VALUE_CHARS]} … ({len(text) - VALUE_CHARS:,} more characters)"


def duration_text(seconds: float | None) -> str:
    """``h:mm:ss`` (or ``m:ss``) for a duration in seconds; ``""`` when unknown."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return ""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def time_text(value: Any) -> str:
    """A naive-UTC time as ``YYYY-MM-DD HH:MM:SS``; ``""`` when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def bytes_text(size: int | None) -> str:
    """A size in bytes for people: ``512 B``, ``3.4 KB``, ``12.0 MB`` (powers of 1024)."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def _field(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def header(run_id: Any, row: Mapping[str, Any], doc: Mapping[str, Any], status_id: str) -> list[Any]:
    """The title (run id, status, experiment) and a list of facts: command, host, times, duration, result."""
    status = str(row.get("status") or doc.get("status") or "")
    experiment = (doc.get("experiment") or {}).get("name") or ""
    stop = doc.get("stop_time")
    facts = [("Experiment", experiment), ("Command", doc.get("command") or ""),
             ("Host", _field(row.get("host")) or ""), ("Started (UTC)", time_text(doc.get("start_time"))),
             ("Stopped (UTC)" if stop else "Last heartbeat (UTC)", time_text(stop or doc.get("heartbeat"))),
             ("Duration", duration_text(_field(row.get("duration")))),
             ("Result", result_text(doc["result"]) if doc.get("result") is not None else "")]
    if status == "QUEUED":
        facts.append(("Queued (UTC)", time_text(doc.get("queue_time"))))
    return [
        html.H2([f"Run {run_id} ", html.Span(status, id=status_id, className=f"status status-{status}"),
                 html.Span(str(experiment), className="run-experiment")]),
        html.Dl([part for name, value in facts if value for part in (html.Dt(name), html.Dd(str(value)))],
                className="run-facts"),
    ]


def result_text(value: Any) -> str:
    """A run's result for its header: numbers to 6 significant digits (``0.977778``, not ``0.9777777777777777``),
    in lists and dicts too; anything else as :func:`as_text` shows it."""
    def rounded(item: Any) -> Any:
        if isinstance(item, float) and math.isfinite(item):
            return float(f"{item:.6g}")
        if isinstance(item, Mapping):
            return {key: rounded(inner) for key, inner in item.items()}
        if isinstance(item, (list, tuple)):
            return [rounded(inner) for inner in item]
        return item
    return as_text(rounded(value))


def tree(value: Any, *, open_depth: int = 99, budget: list[int] | None = None) -> list[Any]:
    """Nested dicts and lists as nested ``<details>``; leaves as ``"key": value`` lines (JSON text).

    ``open_depth``: levels shown open. At most :data:`TREE_NODES` nodes; a note says how many were left out.
    """
    budget = budget if budget is not None else [TREE_NODES]
    items = list(value.items()) if isinstance(value, Mapping) else list(enumerate(value))
    children: list[Any] = []
    for position, (key, item) in enumerate(items):
        if budget[0] <= 0:
            children.append(html.Div(f"… {len(items) - position:,} more entries not shown", className="tree-more"))
            break
        budget[0] -= 1
        label = as_text(str(key)) if isinstance(value, Mapping) else f"[{key}]"
        nested = isinstance(item, (Mapping, list, tuple)) and len(item) > 0
        if nested and not (isinstance(item, (list, tuple)) and all(_scalar(x) for x in item) and len(item) <= 20):
            size = f"{{{len(item)} keys}}" if isinstance(item, Mapping) else f"[{len(item)} items]"
            children.append(html.Details(open=open_depth > 0, className="tree-node", children=[
                html.Summary(f"{label}: {size}"),
                html.Div(tree(item, open_depth=open_depth - 1, budget=budget), className="tree-children")]))
        else:
            children.append(html.Div(f"{label}: {as_text(item)}", className="tree-leaf"))
    return children


def _scalar(value: Any) -> bool:
    return not isinstance(value, (Mapping, list, tuple))


def tree_view(value: Any, component_id: str | None = None, open_depth: int = 99, empty: str = "none") -> html.Div:
    """:func:`tree` in a block, or a note when ``value`` is empty."""
    named = {"id": component_id} if component_id else {}
    if not value:
        return html.Div(html.Em(empty), className="tree", **named)
    body = tree(value, open_depth=open_depth) if isinstance(value, (Mapping, list, tuple)) else [as_text(value)]
    return html.Div(body, className="tree", **named)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], class_name: str) -> html.Table:
    return html.Table(className=class_name, children=[
        html.Thead(html.Tr([html.Th(h) for h in headers])),
        html.Tbody([html.Tr([html.Td("" if cell is None else str(cell)) for cell in row]) for row in rows])])


def gpu_section(host: Mapping[str, Any]) -> list[Any]:
    """The GPU inventory: sacred-gpu's ``host.gpu_inventory`` (index, name, UUID, memory, PCI bus, visible; driver
    and CUDA versions), else Sacred's own ``host.gpus`` (model, total memory, persistence mode; driver version)."""
    inventory = host.get("gpu_inventory")
    if isinstance(inventory, list) and inventory:
        gpus = [g for g in inventory if isinstance(g, Mapping)]
        versions = [f"driver {v}" for v in {g.get("driver_version") for g in gpus} if v]
        versions += [f"CUDA {v}" for v in {g.get("cuda_driver_version") for g in gpus} if v]
        rows = [[g.get("index"), g.get("name"), g.get("uuid"),
                 f"{g['memory_total_mib']:,.0f} MiB" if isinstance(g.get("memory_total_mib"), (int, float)) else "",
                 g.get("pci_bus_id"), {True: "yes", False: "no"}.get(g.get("visible"), "")] for g in gpus]
        return [html.P(", ".join(versions), className="gpu-versions") if versions else None,
                _table(["#", "GPU", "UUID", "memory", "PCI bus", "visible to the run"], rows, "gpu-table")]
    stock = host.get("gpus")
    if isinstance(stock, Mapping) and stock.get("gpus"):
        rows = [[i, g.get("model"), g.get("total_memory"), g.get("persistence_mode")]
                for i, g in enumerate(stock["gpus"]) if isinstance(g, Mapping)]
        driver = stock.get("driver_version")
        return [html.P(f"driver {driver}", className="gpu-versions") if driver else None,
                _table(["#", "GPU", "memory (MiB)", "persistence mode"], rows, "gpu-table")]
    return [html.P(html.Em("No GPU recorded for this run."), className="gpu-none")]


#: The host fields the page shows in their own places; the others are listed as they are.
_HOST_SHOWN = frozenset({"hostname", "os", "python_version", "cpu", "ENV", "gpus", "gpu_inventory"})


def _other_host_facts(host: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in host.items() if key not in _HOST_SHOWN}


def host_section(host: Mapping[str, Any] | None, environment: bool = True) -> list[Any]:
    """Host facts (hostname, OS, Python, CPU), the GPUs and (``environment``) the recorded environment variables
    and other host fields."""
    host = host or {}
    os_info = host.get("os")
    os_text = " ".join(str(part) for part in os_info) if isinstance(os_info, (list, tuple)) else os_info
    facts = [("Hostname", host.get("hostname")), ("OS", os_text), ("Python", host.get("python_version")),
             ("CPU", host.get("cpu"))]
    other = _other_host_facts(host)
    return [
        html.Dl([part for name, value in facts if value for part in (html.Dt(name), html.Dd(str(value)))],
                className="run-facts"),
        html.H4("GPUs"), html.Div(gpu_section(host), id="run-gpus"),
        *([html.H4("Environment variables"), tree_view(host.get("ENV"), open_depth=0, empty="none recorded"),
           *([html.H4("Other host facts"), tree_view(other, open_depth=1)] if other else [])] if environment else []),
    ]


def info_section(doc: Mapping[str, Any], component_id: str) -> list[Any]:
    """The Info tab: Sacred's ``info`` (its list of metric series said in one line: the Metrics and System tabs
    draw them), ``meta``, and the host's environment."""
    info = dict(doc.get("info") or {})
    series = info.pop("metrics", None)
    listed = [html.P(f"{len(series):,} metric series are recorded (info.metrics); the Metrics and System tabs draw "
                     "them.", className="note")] if isinstance(series, list) and series else []
    host = doc.get("host") or {}
    other = _other_host_facts(host)
    empty = "nothing else in info" if listed else "no info"
    return [html.H3("Info"), *listed, tree_view(info, component_id, open_depth=1, empty=empty),
            html.H3("Meta"), tree_view(doc.get("meta"), open_depth=1),
            html.H3("Environment variables"), tree_view(host.get("ENV"), open_depth=0, empty="none recorded"),
            *([html.H3("Other host facts"), tree_view(other, open_depth=1)] if other else [])]


def experiment_facts(experiment: Mapping[str, Any] | None) -> list[Any]:
    """The experiment's name, base directory and main file, its git repositories and its dependencies."""
    experiment = experiment or {}
    facts = [("Name", experiment.get("name")), ("Base directory", experiment.get("base_dir")),
             ("Main file", experiment.get("mainfile"))]
    repositories = [r for r in experiment.get("repositories") or [] if isinstance(r, Mapping)]
    dependencies = [str(d) for d in experiment.get("dependencies") or []]
    return [
        html.Dl([part for name, value in facts if value for part in (html.Dt(name), html.Dd(str(value)))],
                className="run-facts"),
        html.H4("Git"),
        _table(["repository", "commit", "dirty"],
               [[r.get("url"), r.get("commit"), _DIRTY.get(r.get("dirty"), "")] for r in repositories], "git-table")
        if repositories else html.P(html.Em("No git repository recorded.")),
        html.Details([html.Summary(f"Dependencies ({len(dependencies)})"),
                      html.Ul([html.Li(d) for d in dependencies], className="dependencies")],
                     className="dependencies-panel"),
    ]


def fail_trace(doc: Mapping[str, Any], component_id: str) -> html.Div | None:
    """The traceback of a failed run (Sacred's ``fail_trace``, a list of lines), or None."""
    trace = doc.get("fail_trace")
    if not trace:
        return None
    text = "".join(str(line) for line in trace) if isinstance(trace, (list, tuple)) else str(trace)
    return html.Div(className="fail-trace-box", children=[html.H3("Fail trace"),
                                                          html.Pre(text, id=component_id, className="fail-trace")])


def code_view(path: str, text: str) -> dcc.Markdown:
    """A source file with syntax highlighting: a fenced Markdown code block (Dash highlights it; no HTML is
    allowed in the Markdown, and the fence is longer than any run of backticks in the file)."""
    language = {".py": "python", ".json": "json", ".yaml": "yaml", ".yml": "yaml", ".sh": "bash", ".toml": "ini",
                ".cfg": "ini", ".ini": "ini", ".md": "markdown", ".js": "javascript", ".c": "c", ".cpp": "cpp",
                ".h": "c", ".txt": "plaintext"}.get(path[path.rfind("."):].lower() if "." in path else "", "")
    fence = "`" * max(3, _longest_backticks(text) + 1)
    return dcc.Markdown(f"{fence}{language}\n{text}\n{fence}", className="source-code", dedent=False,
                        dangerously_allow_html=False)


def _longest_backticks(text: str) -> int:
    longest = current = 0
    for char in text:
        current = current + 1 if char == "`" else 0
        longest = max(longest, current)
    return longest
