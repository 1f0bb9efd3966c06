"""The run page as plain functions: every section builder and the work of every callback, on runs recorded by real
Sacred experiments through GpuMongoObserver into mongomock (tests/run_page_data.py)."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import zipfile
from typing import Any

import dash_ag_grid as dag
import plotly
import pytest
from dash import dcc, html
from pymongo.errors import AutoReconnect

from dashboard import run_actions, run_metrics, run_tabs, series_csv
from dashboard import run_artifacts as arts
from dashboard import run_ids as ids
from dashboard import run_output as out
from dashboard import run_parts as parts
from dashboard.app import create_app, route
from dashboard.board import Board
from dashboard.pages import run as page
from sacred_gpu import schema
from sacred_gpu.read.store import RunStore, connect
from tests.support.board_data import HOSTILE, SCRIPT
from tests.support.components import by_id, of_type, text, walk
from tests.support.faulty_client import FaultyClient
from tests.support.run_page_data import CSV_TEXT, HOSTILE_HTML, RED, RESET, record_page_runs, tiny_png


@pytest.fixture
def store(client, tmp_path):
    return record_page_runs(client, tmp_path)


@pytest.fixture
def board(store):
    return Board(store, refresh=2.0)


def shown(board: Board, run_id: Any, tab: str = "overview") -> html.Div:
    """What the page shows of run ``run_id`` at ``tab`` once its load callback ran: the header over the tab."""
    header, body, _ = page.render(board, run_id, tab)
    return html.Div([html.Div(header), html.Div(body)])


# -- the page ------------------------------------------------------------------------------------------------------
def test_page_of_a_completed_run_has_a_tab_for_each_part(board):
    """Issue 15: the page is organised in tabs, each read and built only when opened; the URL names the tab."""
    frame = page.layout(board, "1/config")
    assert by_id(frame, ids.PAGE).data == {"run_id": 1, "tab": "config"}
    links = {c.id: (c.href, c.className) for c in of_type(frame, dcc.Link) if getattr(c, "id", None)}
    assert links["run-tab-overview"] == ("/run/1", "run-tab")
    assert links["run-tab-config"] == ("/run/1/config", "run-tab run-tab-active")
    assert list(run_tabs.TABS) == ["overview", "metrics", "system", "output", "config", "code", "artifacts", "info"]
    assert page.tab_of("7") == ("7", "overview") and page.tab_of("7/system/") == ("7", "system")
    assert page.tab_of("a/b") == ("a/b", "overview")  # a string id with a slash, no tab

    root = shown(board, 1, "config")
    assert text(by_id(root, ids.STATUS)) == "COMPLETED"
    assert by_id(root, ids.STATUS).className == "status status-COMPLETED"
    config = by_id(root, ids.CONFIG)
    assert '"lr": 0.1' in text(config) and f'"note": {json.dumps(SCRIPT)}' in text(config)
    assert '"optimizer": {3 keys}' not in text(config)  # two keys: name, betas
    assert '"optimizer": {2 keys}' in text(config) and '"betas": [0.9, 0.999]' in text(config)
    facts = text(of_type(root, html.Dl)[0])
    assert "Experimentvision" in facts and "Commandrich" in facts and "Result0.25" in facts
    assert not [c for c in walk(root) if getattr(c, "id", None) == ids.TAGS]  # the overview's, not built here

    overview = shown(board, 1)
    assert by_id(overview, ids.TAGS).disabled is False and by_id(overview, ids.SAVE).disabled is False
    assert all(getattr(c, "id", None) != ids.FAIL_TRACE for c in walk(overview))
    output = shown(board, 1, "output")
    assert by_id(output, ids.OUTPUT_TICK).disabled is True  # not running: no polling
    assert by_id(output, ids.OUTPUT_TICK).interval == 2000
    titles = [text(h) for h in of_type(shown(board, 1, "artifacts"), html.H3)]
    assert titles == ["Artifacts (6 artifacts, 1.3 KB)"]
    info = [text(h) for h in of_type(shown(board, 1, "info"), html.H3)]
    assert info[:3] == ["Info", "Meta", "Environment variables"]
    code = [text(h) for h in of_type(shown(board, 1, "code"), html.H3)]
    assert code == ["Sources", "Experiment"]


def test_the_frame_reads_nothing_and_a_tab_reads_the_run_once(board, monkeypatch):
    """layout() builds components only (Dash's convention); the load callback reads the run document once."""
    reads = _count_reads(board, monkeypatch)
    page.layout(board, "1/system")
    assert reads == []
    for tab in run_tabs.TABS:
        reads.clear()
        page.render(board, 1, tab)
        assert reads == ["find_one"], tab


def test_unknown_run_and_string_ids(board):
    assert "No such run" in text(shown(board, 999))
    assert "No such run" in text(shown(board, "abc", "system"))
    assert page.run_key("12") == 12 and page.run_key("-3") == -3 and page.run_key("abc") == "abc"
    huge = "99999999999999999999999"  # issue 15 (10): was a 500 (no MongoDB integer holds it)
    assert page.run_key(huge) == huge and "No such run" in text(shown(board, page.run_key(huge)))


def test_failed_run_shows_its_fail_trace(board):
    root = shown(board, 2)
    assert text(by_id(root, ids.STATUS)) == "FAILED"
    trace = text(by_id(root, ids.FAIL_TRACE))
    assert trace.startswith("Traceback") and "RuntimeError: diverged at step 3" in trace
    assert parts.fail_trace({"fail_trace": None}, "x") is None


def test_route_serves_the_page_and_the_app_registers_its_callbacks(board):
    assert by_id(route(board, "/run/2/output"), ids.PAGE).data == {"run_id": 2, "tab": "output"}
    outputs = set()
    for key in create_app(board).callback_map:  # "id.prop", or "..id1.prop1...id2.prop2.." for several outputs
        for output in key.strip(".").split("..."):
            component = output.rsplit(".", 1)[0]
            outputs.add(json.loads(component)["type"] if component.startswith("{") else component)
    for component_id in (ids.HEADER, ids.CONTENT, ids.OUTPUT, ids.SAVED, ids.SOURCE_DOWNLOAD,
                         ids.ARTIFACT_DOWNLOAD, ids.ZIP_DOWNLOAD, ids.OUTPUT_DOWNLOAD, ids.SOURCE_VIEW,
                         ids.ARTIFACT_VIEW, run_metrics.METRICS, run_metrics.METRIC):
        assert component_id in outputs, component_id


def test_metrics_tab_holds_the_plots_context(board):
    root = shown(board, 1, "metrics")
    assert by_id(root, run_metrics.RUN).data["run_id"] == 1


# -- tags and notes ------------------------------------------------------------------------------------------------
def test_tags_and_notes_are_saved_and_refused_read_only(board, store):
    assert run_actions.save_tags_notes(board, 1, "baseline, sweep, baseline", SCRIPT) == "saved tags and notes"
    assert store.run(1)["omniboard"] == {"tags": ["baseline", "sweep"], "notes": SCRIPT}
    root = shown(board, 1)
    assert by_id(root, ids.TAGS).value == "baseline, sweep" and by_id(root, ids.NOTES).value == SCRIPT
    read_only = Board(store, read_only=True)
    assert run_actions.save_tags_notes(read_only, 1, "x", "y").startswith("read-only")
    assert store.run(1)["omniboard"]["tags"] == ["baseline", "sweep"]
    root = shown(read_only, 1)
    assert by_id(root, ids.TAGS).disabled and by_id(root, ids.NOTES).disabled and by_id(root, ids.SAVE).disabled


# -- captured output -----------------------------------------------------------------------------------------------
def test_output_renders_ansi_as_classes_and_hostile_text_as_text(store):
    lines, summary = out.output_lines(store.captured_out(1))
    assert summary == "6 lines"
    first = lines[0]
    red = first.children[0]
    assert isinstance(red, html.Span) and red.className == "ansi-fg-1" and red.children == "error-ish red text"
    assert first.children[1] == " and plain"
    assert text(lines[1]) == SCRIPT and text(lines[2]) == HOSTILE
    assert not [c for line in lines for c in walk(line) if isinstance(c, (html.Img, html.Script, html.Iframe))]
    assert lines[3]._namespace == "dash_html_components" and getattr(lines[3], "data-n") == 4


def test_sgr_codes_and_escapes():
    style = out.apply_sgr(out.PLAIN, "1;4;92;44")
    assert style.classes() == "ansi-bold ansi-underline ansi-fg-10 ansi-bg-4"
    assert out.apply_sgr(style, "0") == out.PLAIN and out.apply_sgr(style, "") == out.PLAIN
    assert out.apply_sgr(style, "22;24;39;49") == out.PLAIN
    assert out.apply_sgr(out.PLAIN, "38;5;196").css() == {"color": "rgb(255,0,0)"}
    assert out.apply_sgr(out.PLAIN, "38;5;9").fg == 9
    assert out.apply_sgr(out.PLAIN, "48;2;1;2;3").css() == {"backgroundColor": "rgb(1,2,3)"}
    assert out.strip_ansi("\x1b[2K\x1b]0;title\x07\x1b[1mbold\x1b[0m\x1b(B") == "bold"


def test_colours_carry_across_lines_and_carriage_returns_overwrite():
    lines, _ = out.output_lines(f"{RED}one\ntwo{RESET}\nthree\n")
    assert lines[1].children[0].className == "ansi-fg-1" and lines[2].children == ["three"]
    segs, _ = out.segments("progress 10%\rprogress 90%\r", out.PLAIN)
    assert "".join(t for t, _ in segs) == "progress 90%"
    assert text(out.output_lines("")[0]) == "no output captured" and out.output_lines("")[1] == "0 lines"


def test_search_keeps_matching_lines_and_highlights(store):
    lines, summary = out.output_lines(store.captured_out(1), "EPOCH")
    assert summary == "3 of 6 lines match"
    assert [text(line) for line in lines] == ["epoch 0 loss 1.00", "epoch 1 loss 0.50", "epoch 2 loss 0.33"]
    marks = [c for c in walk(lines[0]) if isinstance(c, html.Mark)]
    assert [text(m) for m in marks] == ["epoch"]
    coloured, _ = out.output_lines(store.captured_out(1), "red text")  # colours ignored, kept around the match
    mark = next(c for c in walk(coloured) if isinstance(c, html.Mark))
    assert isinstance(mark.children, html.Span) and mark.children.className == "ansi-fg-1"
    assert text(mark) == "red text"
    script, _ = out.output_lines(store.captured_out(1), "<script>")
    assert [text(line) for line in script] == [SCRIPT]


def test_search_results_are_capped(monkeypatch):
    monkeypatch.setattr(out, "MAX_MATCHES", 5)
    lines, summary = out.output_lines("".join(f"hit {i}\n" for i in range(20)), "hit")
    assert len(lines) == 5 and summary == "20 of 20 lines match (the first 5 shown)"


def test_truncation_marker_is_shown_where_the_observer_cut(store):
    full = store.captured_out(3)
    assert "characters of output cut here" in full
    lines, _ = out.output_lines(full)
    markers = [line for line in lines if "out-marker" in line.className]
    assert len(markers) == 1 and "sacred-gpu: 3400 characters of output cut here (output_cap=2000)" in text(markers[0])
    note = out.marker_note(full)
    assert "cut 3,400 characters" in text(note) and note.className == "out-cut-note"
    assert out.marker_note("no marker here") is None


def test_long_output_shows_head_marker_and_tail(monkeypatch):
    monkeypatch.setattr(out, "HEAD_LINES", 3)
    monkeypatch.setattr(out, "TAIL_LINES", 4)
    body = "".join(f"line {i}\n" for i in range(1000))
    capped = schema.cap_output(body, 3000)
    lines, summary = out.output_lines(capped)
    shown = [text(line) for line in lines]
    assert shown[:3] == ["line 0", "line 1", "line 2"] and shown[-4:] == [f"line {i}" for i in range(996, 1000)]
    assert any("characters of output cut here" in s for s in shown)
    gaps = [line for line in lines if line.className == "out-gap"]
    assert len(gaps) == 2 and "not shown" in summary
    long, _ = out.output_lines("x" * (out.LINE_CHARS + 50))
    assert text(long[0]).endswith("(50 more characters on this line)")


def test_live_output_while_running_then_stops(board, store, db):
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    db.runs.update_one({"_id": 1}, {"$set": {"status": "RUNNING", "heartbeat": now}})
    root = shown(board, 1, "output")
    assert by_id(root, ids.OUTPUT_TICK).disabled is False
    assert text(by_id(root, ids.LIVE)) == "live: refreshed every 2 s"
    db.runs.update_one({"_id": 1}, {"$set": {"captured_out": store.captured_out(1) + "epoch 3 loss 0.25\n"}})
    found = run_actions.refresh_output(board, 1, "")
    assert found["live"] and text(found["lines"][-1]) == "epoch 3 loss 0.25"
    db.runs.update_one({"_id": 1}, {"$set": {"heartbeat": now - dt.timedelta(hours=1)}})
    assert run_actions.shown_status(board, 1) == "PROBABLY_DEAD" and run_actions.refresh_output(board, 1, "")["live"]
    silent = text(by_id(shown(board, 1), ids.LIVE))  # issue 15 (9): a dead run is not said to be live
    assert "live" not in silent and silent.startswith("no heartbeat since 20") and "probably died" in silent
    db.runs.update_one({"_id": 1}, {"$set": {"status": "COMPLETED"}})
    found = run_actions.refresh_output(board, 1, "loss 0.25")
    assert not found["live"] and found["summary"] == "1 of 7 lines match"
    assert found["note"] == ""  # issue 15 (2): searching an ended run's output says nothing of reloading
    assert text(by_id(shown(board, 1), ids.LIVE)) == ""
    assert run_actions.shown_status(board, 99) == "DELETED"
    assert run_actions.refresh_output(board, 99, "")["note"] == "the run was deleted"


def test_download_output(board, store):
    sent = run_actions.download_output(board, 3)
    assert sent["filename"] == "run-3-output.txt" and sent["content"] == store.captured_out(3)


# -- config, host, experiment, meta --------------------------------------------------------------------------------
def test_tree_is_bounded_and_values_are_text(monkeypatch):
    monkeypatch.setattr(parts, "TREE_NODES", 5)
    nodes = parts.tree({f"k{i}": i for i in range(10)})
    assert text(nodes[-1]) == "… 5 more entries not shown"
    assert parts.as_text("x" * 3000).endswith("(1,002 more characters)")
    assert parts.as_text(float("nan")) == "nan" and parts.as_text(dt.datetime(2026, 1, 2)) == '"2026-01-02 00:00:00"'
    assert text(parts.tree_view({}, "t", empty="nothing")) == "nothing"
    deep = parts.tree({"a": {"b": [{"c": 1}]}}, open_depth=1)
    assert deep[0].open is True and deep[0].children[1].children[0].open is False


def test_host_section_lists_gpus_with_versions(board, store):
    root = html.Div(parts.host_section(store.run(1)["host"]))
    gpus = text(by_id(root, "run-gpus"))
    assert "driver 550.54.15" in gpus and "CUDA 12.4" in gpus
    assert "NVIDIA H100 80GB HBM3" in gpus and "GPU-22222222-aaaa-bbbb-cccc-000000000000" in gpus
    assert "81,920 MiB" in gpus and "00000000:65:00.0" in gpus
    no_gpu = html.Div(parts.host_section(store.run(2)["host"]))
    assert "No GPU recorded" in text(no_gpu)
    stock = html.Div(parts.gpu_section({"gpus": {"driver_version": "535.1", "gpus": [
        {"model": "Tesla T4", "total_memory": 15360, "persistence_mode": False}]}}))
    assert "driver 535.1" in text(stock) and "Tesla T4" in text(stock) and "15360" in text(stock)


def test_experiment_facts_with_git_and_dependencies():
    root = html.Div(parts.experiment_facts({
        "name": "vision", "base_dir": "/src", "mainfile": "train.py", "dependencies": ["numpy==2.0", "torch==2.4"],
        "repositories": [{"url": "git@example.com:lab/vision.git", "commit": "abc123", "dirty": True}]}))
    shown = text(root)
    assert "git@example.com:lab/vision.git" in shown and "abc123" in shown and "yes (uncommitted changes)" in shown
    assert "Dependencies (2)" in shown and "torch==2.4" in shown
    assert "No git repository recorded" in text(html.Div(parts.experiment_facts({})))


def test_time_duration_and_size_texts():
    assert parts.duration_text(3725) == "1:02:05" and parts.duration_text(65.4) == "1:05"
    assert parts.duration_text(None) == "" and parts.duration_text(float("nan")) == ""
    assert parts.bytes_text(512) == "512 B" and parts.bytes_text(1536) == "1.5 KB" and parts.bytes_text(None) == "?"
    assert parts.bytes_text(3 * 1024**3) == "3.0 GB"
    assert parts.time_text(dt.datetime(2026, 1, 2, 3, 4, 5, 600)) == "2026-01-02 03:04:05"


# -- sources ---------------------------------------------------------------------------------------------------------
def test_sources_are_highlighted_and_downloaded(board, store):
    root = shown(board, 1, "code")
    assert by_id(root, ids.SOURCE_PATHS).data == ["__init__.py", "experiments.py"]
    main_view = by_id(root, {"type": ids.SOURCE_VIEW, "index": 1})  # the main file, open
    code = of_type(main_view, dcc.Markdown)[0]
    assert code.children.startswith("```python\n") and "def run_experiment" in code.children
    assert code.dangerously_allow_html is False
    assert by_id(root, {"type": ids.SOURCE_VIEW, "index": 0}).children == []
    sent = run_actions.download_source(board, 1, "experiments.py")
    assert sent["filename"] == "experiments.py"
    assert base64.b64decode(sent["content"]) == store.source(1, "experiments.py")


def test_code_fence_outlasts_backticks_in_the_file():
    view = parts.code_view("notes.md", "a ```` b\n```\nc")
    assert view.children.startswith("`````markdown\n") and view.children.endswith("\n`````")
    assert parts.code_view("Makefile", "all:").children.startswith("```\n")


# -- artifacts -------------------------------------------------------------------------------------------------------
def test_every_kind_of_artifact_is_previewed(board, store):
    root = shown(board, 1, "artifacts")
    assert by_id(root, ids.ARTIFACT_NAMES).data == ["plot.png", "notes.txt", "table.csv", "report.html", "clip.mp4",
                                                     "weights.bin"]
    views = [by_id(root, {"type": ids.ARTIFACT_VIEW, "index": i}) for i in range(6)]  # small: all open at load
    image = of_type(views[0], html.Img)[0]
    assert image.src == "data:image/png;base64," + base64.b64encode(tiny_png()).decode()
    assert text(of_type(views[1], html.Pre)[0]) == "first line\nsecond line\n"
    table = of_type(views[2], dag.AgGrid)[0]
    assert [c["headerName"] for c in table.columnDefs] == ["epoch", "loss", "acc"] and len(table.rowData) == 5
    assert table.rowData[1] == {"c0": "1", "c1": "0.500", "c2": "0.1"}
    frame = of_type(views[3], html.Iframe)[0]
    assert frame.sandbox == "" and frame.srcDoc == HOSTILE_HTML
    assert not of_type(views[3], html.Script)
    video = of_type(views[4], html.Video)[0]
    assert video.src.startswith("data:video/mp4;base64,") and video.controls
    assert "No preview for application/octet-stream" in text(views[5])
    assert run_actions.artifact_view(board, 1, "notes.txt")[0].children == "first line\nsecond line\n"
    assert "no artifact" in text(run_actions.artifact_view(board, 1, "missing.txt"))


def test_previews_read_no_more_than_their_caps(monkeypatch):
    asked: list[int] = []

    def reader(data: bytes) -> Any:
        def read(n: int) -> bytes:
            asked.append(n)
            return data[:n]
        return read

    big = b"x" * 10_000
    monkeypatch.setattr(arts, "IMAGE_BYTES", 1000)
    assert "too large to preview" in text(arts.preview("a.png", len(big), "image/png", reader(big)))
    assert asked == []  # nothing read
    monkeypatch.setattr(arts, "TEXT_BYTES", 100)
    shown = arts.preview("a.log", len(big), "text/plain", reader(big))
    assert text(shown[0]) == "x" * 100 and "The first 100 B of 9.8 KB shown" in text(shown[1]) and asked == [100]
    monkeypatch.setattr(arts, "CSV_BYTES", 60)
    csv_view = arts.preview("t.csv", len(CSV_TEXT), "text/csv", reader(CSV_TEXT.encode()))
    assert len(csv_view[0].rowData) == 3 and "rows shown" in text(csv_view[1])  # the line the cap cut is dropped
    monkeypatch.setattr(arts, "CSV_ROWS", 2)
    assert len(arts.csv_table(CSV_TEXT, complete=True)[0].rowData) == 2
    monkeypatch.setattr(arts, "HTML_BYTES", 10)
    assert not of_type(arts.preview("r.html", 500, "text/html", reader(b"<p>" * 200)), html.Iframe)
    untyped = arts.preview("log", 11, None, reader(b"plain words"))  # no type: text if it reads as text
    assert text(untyped[0]) == "plain words"


def test_media_types_are_sanitised_for_data_uris():
    assert arts.content_type("a.png", "image/png") == "image/png"
    assert arts.content_type("a.png", None) == "image/png"
    assert arts.content_type("a.png", 'image/png" onerror="x') == "image/png"  # falls back to the name
    assert arts.content_type("a", "text/html;charset=utf-8") == "text/html"
    assert arts.content_type("blob", "javascript:alert(1)") == "application/octet-stream"
    assert arts.kind("x.htm", "application/octet-stream") == "html"
    assert arts.kind("x.json", "application/json") == "text"
    assert not arts.looks_like_text(b"\x00\x01") and arts.looks_like_text("é".encode()[:1])


def test_artifact_download_and_zip_of_all(board, store, monkeypatch):
    sent, message = run_actions.download_artifact(board, 1, "plot.png")
    assert sent["filename"] == "plot.png" and base64.b64decode(sent["content"]) == tiny_png()
    assert message == "downloading plot.png"
    sent, message = run_actions.download_zip(board, 1)
    assert sent["filename"] == "run-1-artifacts.zip" and message == "zipped 6 artifacts, 1.3 KB"
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(sent["content"]))) as archive:
        assert sorted(archive.namelist()) == sorted(store.run(1)["artifacts"][i]["name"] for i in range(6))
        assert archive.read("report.html").decode() == HOSTILE_HTML
    assert run_actions.download_zip(board, 2) == (None, "no artifacts")
    monkeypatch.setattr(arts, "DOWNLOAD_BYTES", 100)
    assert run_actions.download_artifact(board, 1, "weights.bin")[0] is None
    assert "download them one by one" in run_actions.download_zip(board, 1)[1]
    assert run_actions.download_artifact(board, 1, "nothing")[0] is None


def test_large_artifacts_stream_from_gridfs_as_attachments(board, store, monkeypatch):
    monkeypatch.setattr(arts, "DOWNLOAD_BYTES", 100)
    root = shown(board, 1, "artifacts")
    links = [c.href for c in walk(root) if isinstance(c, html.A) and c.className == "download"]
    assert links == ["/download/run/1/artifact/report.html", "/download/run/1/artifact/weights.bin"]  # > 100 B
    message = run_actions.download_artifact(board, 1, "weights.bin")[1]
    assert "download it from /download/run/1/artifact/weights.bin" in message
    server = create_app(board).server.test_client()
    response = server.get(links[1])
    assert response.status_code == 200 and response.data == bytes(range(256)) * 4
    hostile = server.get(arts.stream_url(1, "report.html"))
    assert hostile.data.decode() == HOSTILE_HTML and hostile.mimetype == "application/octet-stream"
    assert hostile.headers["Content-Disposition"] == "attachment; filename*=UTF-8''report.html"
    assert hostile.headers["X-Content-Type-Options"] == "nosniff" and hostile.headers["Content-Length"] == "108"
    assert server.get(arts.stream_url(1, "nothing")).status_code == 404
    assert server.get(arts.stream_url(77, "x")).status_code == 404
    assert create_app(board, auth=("ada", "pw")).server.test_client().get(links[1]).status_code == 401
    assert arts.stream_url("a/b", "dir/x y.txt") == "/download/run/a%2Fb/artifact/dir%2Fx%20y.txt"


def test_files_missing_from_gridfs_leave_the_page_working(board, store, db):
    db["fs.files"].delete_one({"_id": store.artifact_files(1)[0]["file_id"]})  # plot.png
    main_source = next(file_id for path, file_id in store.run(1)["experiment"]["sources"] if path == "experiments.py")
    db["fs.files"].delete_one({"_id": main_source})
    root = shown(board, 1, "artifacts")
    assert "missing from GridFS" in text(by_id(root, {"type": ids.ARTIFACT_VIEW, "index": 0}))
    assert "missing from GridFS" in text(by_id(shown(board, 1, "code"), {"type": ids.SOURCE_VIEW, "index": 1}))
    assert of_type(by_id(root, {"type": ids.ARTIFACT_VIEW, "index": 1}), html.Pre)  # the others still show
    server = create_app(board).server.test_client()
    assert server.get(arts.stream_url(1, "plot.png")).status_code == 404


def test_zip_names_are_safe_and_unique():
    data = arts.zip_bytes([("../../etc/passwd", b"a"), ("/abs/x.txt", b"b"), ("x.txt", b"c"), ("abs/x.txt", b"d")])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["etc/passwd", "abs/x.txt", "x.txt", "abs/x-2.txt"]


def test_store_reads_artifact_metadata_without_content(store):
    files = store.artifact_files(1)
    assert [(f["name"], f["content_type"]) for f in files][:3] == [
        ("plot.png", "image/png"), ("notes.txt", "text/plain"), ("table.csv", "text/csv")]
    assert files[0]["length"] == len(tiny_png())
    assert store.open_artifact(1, "notes.txt").read(5) == b"first"
    with pytest.raises(KeyError):
        store.open_artifact(1, "missing")
    with pytest.raises(KeyError):
        store.artifact_files(404)
    with pytest.raises(KeyError):
        store.captured_out(404)
    assert store.artifact_files(2) == []


# -- the registered callbacks, through Dash's HTTP API ----------------------------------------------------------------
def _call(app: Any, output: str, outputs: Any, inputs: list, state: list, changed: list[str]) -> Any:
    response = app.server.test_client().post("/_dash-update-component", json={
        "output": output, "outputs": outputs, "inputs": inputs, "state": state, "changedPropIds": changed})
    return response.status_code, (response.get_json() if response.status_code == 200 else None)


def test_callbacks_answer_through_the_app_and_report_an_unreachable_database(client, tmp_path):
    faulty = FaultyClient(client)
    record_page_runs(client, tmp_path)
    board = Board(RunStore(faulty["sacred"]))
    app = create_app(board)
    state = [{"id": ids.TAGS, "property": "value", "value": "a, b"},
             {"id": ids.NOTES, "property": "value", "value": "n"},
             {"id": ids.PAGE, "property": "data", "value": {"run_id": 1, "tab": "overview"}}]
    code, body = _call(app, f"{ids.SAVED}.children", {"id": ids.SAVED, "property": "children"},
                       [{"id": ids.SAVE, "property": "n_clicks", "value": 1}], state, [f"{ids.SAVE}.n_clicks"])
    assert code == 200 and body["response"][ids.SAVED]["children"] == "saved tags and notes"
    assert connect(client=client).run(1)["omniboard"]["tags"] == ["a", "b"]
    faulty.outage(AutoReconnect)
    code, body = _call(app, f"{ids.SAVED}.children", {"id": ids.SAVED, "property": "children"},
                       [{"id": ids.SAVE, "property": "n_clicks", "value": 2}], state, [f"{ids.SAVE}.n_clicks"])
    assert body["response"][ids.SAVED]["children"].startswith("not saved: MongoDB unreachable")
    names = [ids.OUTPUT, ids.OUTPUT_SUMMARY, ids.OUTPUT_CUT, ids.OUTPUT_TICK, ids.OUTPUT_NOTE]
    props = ["children", "children", "children", "disabled", "children"]
    key = next(k for k in app.callback_map if f"{ids.OUTPUT}.children" in k)
    code, body = _call(app, key,
                       [{"id": n, "property": p} for n, p in zip(names, props)],
                       [{"id": ids.OUTPUT_TICK, "property": "n_intervals", "value": 3},
                        {"id": ids.OUTPUT_SEARCH, "property": "value", "value": ""}],
                       [{"id": ids.PAGE, "property": "data", "value": {"run_id": 1, "tab": "output"}}],
                       [f"{ids.OUTPUT_TICK}.n_intervals"])
    assert code == 200
    assert body["response"][ids.OUTPUT_NOTE]["children"].startswith("not refreshed: MongoDB unreachable")
    assert ids.OUTPUT not in body["response"]  # the output shown stays


def _count_reads(board: Board, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The reads of the runs collection made from now on, by method name."""
    reads: list[str] = []
    runs = board.store._runs

    class Counting:
        def __getattr__(self, name):
            attribute = getattr(runs, name)
            if name in ("find", "find_one", "aggregate", "count_documents", "distinct"):
                def counted(*args, **kwargs):
                    reads.append(name)
                    return attribute(*args, **kwargs)
                return counted
            return attribute

    monkeypatch.setattr(board.store, "_runs", Counting())
    return reads


# -- what a tab says where there is nothing to show, and a run with thousands of metrics ---------------------------
def _bare_run(db: Any, run_id: int, **fields: Any) -> None:
    started = dt.datetime(2026, 1, 1, 12, 0, 0)
    db.runs.insert_one({"_id": run_id, "status": "COMPLETED", "start_time": started,
                        "stop_time": started + dt.timedelta(seconds=0.4), "experiment": {"name": "bare"},
                        "info": {}, **fields})


@pytest.mark.parametrize(("fields", "says"), [
    ({"status": "QUEUED", "format": schema.FORMAT}, "This run is queued: it has not started"),
    ({}, "This run was recorded by Sacred's own MongoObserver, which samples no GPU"),
    ({"format": schema.FORMAT, schema.SAMPLING_FIELD: None}, "Sampling was turned off for this run"),
    ({"format": schema.FORMAT, "status": "FAILED", schema.SAMPLING_FIELD: {"interval_s": 1.0, "slow_interval_s": 10.0}},
     "No system sample was stored for this run (it ran 0.4 s; the observer samples every 1 s"),
])
def test_a_run_without_samples_says_why(board, db, fields, says):
    """Issue 15 (9): QUEUED and fast-failing runs were said to have had sampling off or Sacred's observer."""
    _bare_run(db, 50, **fields)
    notes = [text(p) for p in of_type(shown(board, 50, "system"), html.P) if "run-plots-no-gpu" in p.className]
    assert len(notes) == 1 and notes[0].startswith(says), notes


def test_a_run_with_ten_thousand_metrics_stays_small(board, db):
    """Issue 15 (12): a run with 10,000 metric names made an 8 MB page that never rendered. Each tab now stays
    under 1 MB: the Metrics tab draws the first panels and finds the others by name."""
    names = [f"layer{i}/grad_norm" for i in range(10_000)]
    _bare_run(db, 60, format=schema.FORMAT, info={"metrics": [{"id": f"m{i}", "name": name}
                                                              for i, name in enumerate(names)]},
              metric_rollups={schema.rollup_key(name): {"count": 1, "last": 0.5, "min": 0.5, "max": 0.5,
                                                        "min_step": 0, "max_step": 0} for name in names})
    for tab in run_tabs.TABS:
        size = len(json.dumps(page.render(board, 60, tab)[:2], cls=plotly.utils.PlotlyJSONEncoder))
        assert size < 1_000_000, (tab, size)
    metrics = shown(board, 60, "metrics")
    drawn = [c.id["name"] for c in walk(metrics) if isinstance(getattr(c, "id", None), dict)
             and c.id.get("type") == run_metrics.METRIC]
    assert drawn == names[:run_metrics.MAX_PANELS]
    assert text(by_id(metrics, run_metrics.COUNT)).startswith("48 of 10,000 matching metrics shown")
    found = run_metrics.trimmed(board.store.run_plots(60).context, "layer9999")
    assert found["metric_names"] == ["layer9999/grad_norm"] and run_metrics.count_text(found) == \
        "1 of 1 matching metrics shown (10,000 in all)"
    summary = of_type(shown(board, 60), dag.AgGrid)[0]
    assert len(summary.rowData) == run_tabs.SUMMARY_ROWS and summary.rowData[0]["last"] == 0.5
    info = text(shown(board, 60, "info"))
    assert "10,000 metric series are recorded" in info and "[0]: {2 keys}" not in info


def test_every_panel_downloads_its_data_as_csv(board, store, db):
    now = dt.datetime(2026, 1, 1, 12, 0, 0)
    db.metrics.insert_one({"run_id": 1, "name": "loss", "steps": [0, 1, 2], "values": [0.9, 0.5, 0.25],
                           "timestamps": [now, now, now]})
    server = create_app(board).server.test_client()
    response = server.get(series_csv.metric_url(1, "loss"))
    assert response.status_code == 200 and response.mimetype == "text/csv"
    lines = response.data.decode().splitlines()
    assert lines == ["step,timestamp,value", "0,2026-01-01 12:00:00,0.9", "1,2026-01-01 12:00:00,0.5",
                     "2,2026-01-01 12:00:00,0.25"]
    assert response.headers["Content-Disposition"] == "attachment; filename*=UTF-8''run-1-loss.csv"
    assert server.get(series_csv.metric_url(1, "nothing")).status_code == 404
    assert server.get(series_csv.metric_url(404, "loss")).status_code == 404
    assert server.get(series_csv.system_url(1, "no-such-panel")).status_code == 404
