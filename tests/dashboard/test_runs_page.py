"""sacred-board's runs table as plain functions: columns, rows requests, edits, deletes, CSV, settings, CLI."""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import statistics

import pytest
from dash import no_update
from pymongo.errors import ServerSelectionTimeoutError

from dashboard import cli, runs_actions, runs_csv
from dashboard import columns as cols
from dashboard.app import create_app, route
from dashboard.board import Board
from dashboard.pages import runs
from sacred_gpu import schema
from sacred_gpu.read import BoardSettings, CustomColumn, MetricColumn, connect
from tests.support.board_data import HOSTILE, RUNS, record_runs
from tests.support.faulty_client import FaultyClient


@pytest.fixture
def store(client):
    return record_runs(client, RUNS)


@pytest.fixture
def board(store):
    return Board(store)


def request(start=0, end=100, sort=None):
    return {"startRow": start, "endRow": end, "sortModel": sort or [], "filterModel": {}}


def spec(*metrics):
    return cols.spec(BoardSettings(tuple(MetricColumn(m, r) for m, r in metrics)))


def test_rows_come_newest_first_with_the_total(board):
    response = runs_actions.page_rows(board, request(), "", spec())
    assert [row["id"] for row in response["rowData"]] == [5, 4, 3, 2, 1]
    assert response["rowCount"] == 5
    failed = response["rowData"][1]
    assert failed["status"] == "FAILED" and failed["config.lr"] == 0.5 and failed["experiment"] == "mnist"
    assert isinstance(failed["start"], str) and failed["start"].startswith("20")


def test_blocks_page_through_the_database_and_count_matches(board):
    first = runs_actions.page_rows(board, request(0, 2), "", spec())
    second = runs_actions.page_rows(board, request(2, 4), "", spec())
    last = runs_actions.page_rows(board, request(4, 6), "", spec())
    assert [r["id"] for r in first["rowData"] + second["rowData"] + last["rowData"]] == [5, 4, 3, 2, 1]
    assert first["rowCount"] == 5 and last["rowCount"] == 5  # counted, and known from the short last block


def test_sort_by_config_and_by_metric_rollup(board):
    by_lr = runs_actions.page_rows(board, request(sort=[{"colId": "config.lr", "sort": "asc"}]), "", spec())
    assert [r["config.lr"] for r in by_lr["rowData"]] == [0.001, 0.01, 0.05, 0.1, 0.5]
    by_loss = runs_actions.page_rows(board, request(sort=[{"colId": "loss.min", "sort": "desc"}]), "",
                             spec(("loss", "min")))
    assert [r["loss.min"] for r in by_loss["rowData"]] == [0.9, 0.6, 0.4, 0.25, 0.2]
    by_gpu = cols.sort_argument([{"colId": "gpu_mem_peak_mib", "sort": "desc"}])
    assert by_gpu == "-system.gpu_mem_peak_mib"
    assert cols.sort_argument([{"colId": "duration", "sort": "asc"}]) is None  # not sortable: the default order
    assert not next(c for c in cols.column_defs([], BoardSettings(), read_only=False)
                    if c["colId"] == "duration")["sortable"]


def test_filters_by_status_config_and_metric_rollup(board):
    text, error = runs_actions.check_filter("COMPLETED", "config.lr < 0.06 and loss.min < 0.3")
    assert error == ""
    response = runs_actions.page_rows(board, request(), text, spec(("loss", "min")))
    assert sorted(r["id"] for r in response["rowData"]) == [2, 5]
    failed, _ = runs_actions.check_filter("FAILED", "")
    assert [r["id"] for r in runs_actions.page_rows(board, request(), failed, spec())["rowData"]] == [4]


def test_malformed_and_hostile_filters_say_where_and_run_nothing(board):
    text, error = runs_actions.check_filter("", "config.lr <")
    assert text is no_update and "position" in error
    text, error = runs_actions.check_filter("", 'experiment == "x" or $where == 1')
    assert text is no_update and error
    text, error = runs_actions.check_filter("", 'tags contains "<script>alert(1)</script>"')
    assert error == "" and runs_actions.page_rows(Board(board.store), request(), text, spec())["rowData"] == []


def test_metric_and_custom_columns_are_saved_where_omniboard_reads_them(board, db):
    runs.change_columns(board, runs.ADD_METRIC, "loss", "min", None, None, None, [])
    runs.change_columns(board, runs.ADD_METRIC, "acc", "max_step", None, None, None, [])
    settings, message = runs.change_columns(board, runs.ADD_CUSTOM, None, None, "host.hostname", None, None, [])
    assert message == "added column host.hostname"
    assert [c.key for c in settings.metric_columns] == ["loss.min", "acc.max_step"]
    assert list(db[schema.OMNIBOARD_METRIC_COLUMNS].find({}, {"_id": 0})) == [
        {"name": "loss.min", "metric_name": "loss", "extrema": "min"}]  # Omniboard has no max_step
    assert list(db[schema.OMNIBOARD_CUSTOM_COLUMNS].find({}, {"_id": 0})) == [
        {"name": "host.hostname", "config_path": "host.hostname"}]
    row = runs_actions.page_rows(board, request(), "", cols.spec(settings))["rowData"][-1]
    assert row["loss.min"] == 0.4 and row["acc.max_step"] == 2 and row["host.hostname"] == row["host"]
    keep = ["m:loss\x1fmin", "c:host.hostname"]
    settings, _ = runs.change_columns(board, runs.EXTRA, None, None, None, keep, None, [])
    assert [c.key for c in settings.metric_columns] == ["loss.min"] and len(settings.custom_columns) == 1


def test_columns_omniboard_defined_are_shown(board, db):
    db[schema.OMNIBOARD_METRIC_COLUMNS].insert_one({"name": "best acc", "metric_name": "acc", "extrema": "max"})
    db[schema.OMNIBOARD_CUSTOM_COLUMNS].insert_one({"name": "LR", "config_path": "lr"})
    settings = board.store.board_settings()
    assert settings.metric_columns == (MetricColumn("acc", "max", "best acc"),)
    assert settings.custom_columns == (CustomColumn("config.lr", "LR"),)
    defs = cols.column_defs(board.store.config_keys(), settings, read_only=False)
    assert {"acc.max", "config.lr"} <= {d["colId"] for d in defs}
    assert next(d for d in defs if d["colId"] == "acc.max")["headerName"] == "best acc"


def test_layout_is_saved_and_applied_to_every_new_page(board):
    state = [{"colId": "ag-Grid-SelectionColumn", "width": 50}, {"colId": "status", "width": 222},
             {"colId": "id", "width": 80}, {"colId": "host", "hide": True}]
    board.store.save_layout(cols.layout_from_state(state))
    defs = cols.column_defs(board.store.config_keys(), board.store.board_settings(), read_only=False)
    assert [d["colId"] for d in defs][:3] == ["status", "id", "host"]
    assert defs[0]["width"] == 222 and defs[2]["hide"] is True
    settings, _ = runs.change_columns(board, runs.VISIBLE, None, None, None, None, ["id", "status"], defs)
    hidden = {item["colId"] for item in settings.layout if item["hide"]}
    assert "experiment" in hidden and "status" not in hidden


def test_tags_and_notes_edits_are_saved_for_omniboard(board, db):
    message = runs_actions.save_edits(board, [
        {"colId": "tags", "value": "baseline, best ,baseline", "oldValue": [], "data": {"id": 2}},
        {"colId": "notes", "newValue": HOSTILE, "data": {"id": 2}},  # the key dash-ag-grid < 33 used
        {"colId": "status", "value": "COMPLETED", "data": {"id": 2}},  # not editable: ignored
    ])
    assert message == "saved tags of run 2, notes of run 2"
    assert db.runs.find_one({"_id": 2})["omniboard"] == {"tags": ["baseline", "best"], "notes": HOSTILE}
    assert cols.parse_tags(["a", " b", "a", ""]) == ["a", "b"]


def test_read_only_refuses_every_edit(store, db):
    board = Board(store, read_only=True)
    edit = {"colId": "tags", "newValue": "x", "data": {"id": 1}}
    assert runs_actions.save_edits(board, [edit]).startswith("read-only")
    assert runs_actions.delete_selected(board, [{"id": 1}]).startswith("read-only")
    assert "omniboard" not in db.runs.find_one({"_id": 1}) and db.runs.count_documents({}) == 5
    defs = cols.column_defs([], BoardSettings(), read_only=True)
    assert not any(d.get("editable") for d in defs)


def test_delete_selected_removes_runs_and_their_metrics(board, db):
    assert runs_actions.delete_selected(board, []) == "select runs to delete first"
    assert runs_actions.delete_selected(board, [{"id": 1}, {"id": 3}]) == "deleted 2 runs: 1, 3"
    assert sorted(doc["_id"] for doc in db.runs.find()) == [2, 4, 5]
    assert db.metrics.count_documents({"run_id": {"$in": [1, 3]}}) == 0


def test_csv_export_is_the_current_view(board):
    settings = BoardSettings((MetricColumn("loss", "min"),))
    defs = cols.column_defs(board.store.config_keys(), settings, read_only=False)
    state = [{"colId": "id"}, {"colId": "loss.min"}, {"colId": "config.lr"}, {"colId": "status", "hide": True}]
    text = runs_actions.csv_export(board, "status == COMPLETED", [{"colId": "config.lr", "sort": "asc"}],
                                   cols.spec(settings), state, defs, ["id", "loss.min", "config.lr"])
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == ["id", "loss.min", "config.lr"]
    assert table[1:] == [["3", "0.6", "0.001"], ["2", "0.2", "0.01"], ["5", "0.25", "0.05"], ["1", "0.4", "0.1"]]


def test_csv_export_right_after_hiding_a_column_leaves_it_out(board):
    """The grid's columnState lags a change in the columns chooser: the chooser says what is shown."""
    defs = runs_actions.column_defs(board, board.store.board_settings())
    stale = [{"colId": d["colId"], "hide": False} for d in defs]  # the grid has not told the hide yet
    shown = [d["colId"] for d in defs if d["colId"] != "host"]
    settings, _ = runs.change_columns(board, runs.VISIBLE, None, None, None, None, shown, defs)
    text = runs_actions.csv_export(board, "", None, cols.spec(settings), stale, defs, shown)
    header = next(csv.reader(io.StringIO(text)))
    assert "host" not in header and header[:3] == ["id", "experiment", "status"]


def test_csv_values_are_written_as_the_table_shows_them(board, db):
    board.store.set_tags(4, ["diverged", "lr-sweep"])
    board.store.set_notes(1, '=HYPERLINK("http://evil","x")')
    board.store.set_notes(2, "+1")
    board.store.set_notes(3, "@SUM(A1)")
    board.store.set_notes(5, "-2+3")
    db.runs.update_one({"_id": 1}, {"$set": {"config.epochs": 10, "start_time": dt.datetime(2026, 1, 2, 10, 0, 0),
                                             "stop_time": dt.datetime(2026, 1, 2, 11, 2, 3)}})
    visible = ["tags", "notes", "config.epochs", "duration", "start", "config.lr"]
    text = runs_actions.csv_export(board, "", [{"colId": "id", "sort": "asc"}], cols.spec(BoardSettings()), None,
                                   runs_actions.column_defs(board, BoardSettings()), visible)
    table = {row["id"]: row for row in csv.DictReader(io.StringIO(text))}
    assert table["4"]["tags"] == "diverged, lr-sweep"
    assert table["1"]["config.epochs"] == "10" and table["2"]["config.epochs"] == ""  # not 10.0 beside a blank
    assert table["1"]["duration"] == "1:02:03" and table["1"]["start"] == "2026-01-02 10:00:00"
    assert table["1"]["config.lr"] == "0.1"
    assert table["1"]["notes"] == "'=HYPERLINK(\"http://evil\",\"x\")"  # inert: a spreadsheet shows it as text
    assert [table[key]["notes"] for key in "235"] == ["'+1", "'@SUM(A1)", "'-2+3"]
    assert [runs_csv.cell_text(text) for text in ("\tx", "\rx", "a=b", -2)] == ["'\tx", "'\rx", "a=b", "-2"]


def test_pages_route_and_show_a_message_when_mongodb_is_down(board, client):
    assert "runs-grid" in str(route(board, "/"))
    assert "Not found" in str(route(board, "/nowhere"))
    down = FaultyClient(client)
    down.outage(ServerSelectionTimeoutError)
    down_board = Board(connect(client=down))
    assert "runs-grid" in str(route(down_board, "/"))  # the layout reads nothing: the load callback does
    with create_app(down_board).server.app_context():
        loaded = runs.load(True, None, None)
    assert all(item is no_update for item in loaded[:-1])
    assert "MongoDB unreachable" in loaded[-1] and "ServerSelectionTimeoutError" in loaded[-1]


def test_page_load_fills_columns_settings_and_names_once(board):
    board.store.save_layout([{"colId": "status", "width": 222, "hide": False}, {"colId": "id", "width": None}])
    with create_app(board).server.app_context():
        (defs, spec_data, _, _, shown, _, metric_names, spark_names, group_metrics, group_keys, sized, vocabulary,
         reload, status) = runs.load(True, None, None)
        with pytest.raises(runs.PreventUpdate):  # loaded once: later ticks do nothing
            runs.load(True, 3, spec_data)
    assert [d["colId"] for d in defs][:2] == ["status", "id"] and [o["value"] for o in shown][:2] == ["status", "id"]
    assert metric_names == spark_names == group_metrics == ["acc", "loss"]
    assert sized == ["status"] and reload == 1 and status == ""
    assert [o["value"] for o in group_keys][:3] == ["config.lr", "config.note", "config.seed"]
    assert {"config.lr", "loss.min", "acc.last", "status", "experiment"} <= set(vocabulary)


def test_running_quick_filter_leaves_out_probably_dead_runs(board, db):
    """Issue 15, item 9: a RUNNING run whose heartbeat is older than dead_after is PROBABLY_DEAD, not RUNNING."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    db.runs.update_one({"_id": 1}, {"$set": {"status": "RUNNING", "heartbeat": now - dt.timedelta(hours=1)}})
    db.runs.update_one({"_id": 2}, {"$set": {"status": "RUNNING", "heartbeat": now}})

    def shown(status: str) -> list[tuple[int, str]]:
        text, error = runs_actions.check_filter(status, "")
        assert error == ""
        return [(r["id"], r["status"]) for r in runs_actions.page_rows(board, request(), text, spec())["rowData"]]

    assert shown("RUNNING") == [(2, "RUNNING")]
    assert shown("PROBABLY_DEAD") == [(1, "PROBABLY_DEAD")]


def test_unknown_metric_in_a_filter_says_so_in_the_page(board):
    """Issue 15, item 10: a misspelled metric gives a message naming the nearest one, not a silent empty table."""
    text, error = runs_actions.check_filter("", "los.min < 0.2")
    assert error == ""
    with create_app(board).server.app_context():
        response, status, count = runs.rows(request(), text, spec())
    assert response == {"rowData": [], "rowCount": 0} and count == "0 runs"
    assert status == "unknown metric 'los' (no run logged it); did you mean 'loss'?"


def test_a_layout_overtaken_by_a_later_one_of_its_page_is_not_written_over_it(board):
    """The server answers callbacks on several threads: a page's earlier save arriving after its later one is
    dropped; another page's saves are their own."""
    def state(width: int) -> list[dict]:
        return [{"colId": "status", "width": width}, {"colId": "id", "width": 70}]

    def saved_width() -> int:
        return board.store.board_settings().layout[0]["width"]

    assert runs_actions.save_layout(board, state(300), ["status"], "page-a", 2)
    assert not runs_actions.save_layout(board, state(120), ["status"], "page-a", 1)  # sent before, arrived after
    assert saved_width() == 300
    assert not runs_actions.save_layout(board, state(120), ["status"], "page-a", 2)  # the same save twice
    assert runs_actions.save_layout(board, state(250), ["status"], "page-b", 1)
    assert saved_width() == 250
    assert runs_actions.save_layout(board, state(310), ["status"], "page-a", 3)
    assert saved_width() == 310


def test_custom_config_column_beside_the_config_columns(board):
    """Issue 15, item 10: a custom config.* column (projected under config) shows its values, no path collision."""
    settings, message = runs.change_columns(board, runs.ADD_CUSTOM, None, None, "config.lr", None, None, [])
    assert message == "added column config.lr"
    with create_app(board).server.app_context():
        response, status, _ = runs.rows(request(), "", cols.spec(settings))
    assert status == "" and [row["config.lr"] for row in response["rowData"]] == [0.05, 0.5, 0.001, 0.01, 0.1]


def test_hiding_and_showing_a_column_keeps_its_place_and_width(board):
    state = [{"colId": "status", "width": 200}, {"colId": "host", "width": 90}, {"colId": "id", "width": 70},
             {"colId": "experiment", "width": 150}]
    assert runs_actions.save_layout(board, state, ["host"])  # only the width a person set is kept
    assert not runs_actions.save_layout(board, state, ["host"])  # unchanged: not written again
    defs = runs_actions.column_defs(board, board.store.board_settings())
    order = [d["colId"] for d in defs]
    assert order[:4] == ["status", "host", "id", "experiment"]
    assert next(d for d in defs if d["colId"] == "host")["width"] == 90
    assert "width" not in next(d for d in defs if d["colId"] == "status")  # fits its content
    everything = [d["colId"] for d in defs]
    settings, _ = runs.change_columns(board, runs.VISIBLE, None, None, None, None,
                                      [c for c in everything if c != "host"], defs)
    settings, _ = runs.change_columns(board, runs.VISIBLE, None, None, None, None, everything, defs)
    again = runs_actions.column_defs(board, settings)
    assert [d["colId"] for d in again] == order and not any(d.get("hide") for d in again)
    assert next(d for d in again if d["colId"] == "host")["width"] == 90


def test_basic_auth_guards_every_request(board):
    server = create_app(board, auth=("ada", "s3cret:x")).server.test_client()
    assert server.get("/").status_code == 401
    assert server.get("/", headers={"Authorization": "Basic YWRhOndyb25n"}).status_code == 401
    import base64
    good = base64.b64encode(b"ada:s3cret:x").decode()
    assert server.get("/", headers={"Authorization": f"Basic {good}"}).status_code == 200
    script = server.get("/_dash-dependencies", headers={"Authorization": f"Basic {good}", "Accept-Encoding": "gzip"})
    assert script.headers.get("Content-Encoding") == "gzip"  # responses are compressed


def test_cli_arguments_and_database_waiting(caplog, client):
    assert cli.target("db.lab:27018:vision", None) == cli.Target("db.lab:27018", "vision")
    assert cli.target(None, "mongodb://u:p@db/exp") == cli.Target("mongodb://u:p@db/exp", "exp")
    assert cli.target(None, None) == cli.Target(None, "sacred")
    with pytest.raises(ValueError):
        cli.target("not a spec!", None)
    assert cli.parse_auth("ada:pw:with:colons") == ("ada", "pw:with:colons")
    with pytest.raises(ValueError):
        cli.parse_auth("nopassword")
    args = cli.build_parser().parse_args([])
    assert (args.host, args.port, args.read_only, args.demo) == ("127.0.0.1", 9000, False, False)
    with pytest.raises(SystemExit):
        cli.main(["-m", "bad spec!"])
    down = FaultyClient(client)
    down.outage(ServerSelectionTimeoutError)
    with caplog.at_level(logging.ERROR):
        assert not cli.wait_for_database(connect(client=down), "db.lab:27017", retry_every=0.01, attempts=3)
    assert sum("cannot reach MongoDB at db.lab:27017" in r.message for r in caplog.records) == 3
    assert "retrying" in caplog.records[0].message and "Traceback" not in caplog.text
    assert cli.wait_for_database(connect(client=client), "here", retry_every=0.01, attempts=1)


def test_wsgi_app_is_configured_from_the_environment(monkeypatch):
    from dashboard.wsgi import app_from_environment

    app = app_from_environment({"SACRED_BOARD_MU": "mongodb://127.0.0.1:1/lab", "SACRED_BOARD_READ_ONLY": "1",
                                "SACRED_BOARD_AUTH": "ada:pw"})
    assert app.server.test_client().get("/").status_code == 401  # auth on, and nothing connected at import


def test_store_offers_metric_names_config_keys_and_checks_columns(store):
    assert store.metric_names() == ["acc", "loss"]
    assert set(store.config_keys()) == {"config.lr", "config.note", "config.seed"}
    with pytest.raises(ValueError, match="unknown roll-up"):
        store.save_metric_columns([MetricColumn("loss", "median")])
    for path in ("", "config.$where", ".config", "config..lr"):
        with pytest.raises(ValueError, match="invalid column path"):
            store.save_custom_columns([CustomColumn(path)])
    assert store.board_settings() == BoardSettings()  # nothing half-saved


def test_group_view_shows_each_settings_spread_across_its_runs_under_the_filter(board):
    """Issue 15: runs grouped by a key (W&B's group by): a row per value, the number of runs, the mean, standard
    deviation, min and max of a roll-up across them; the table's filter applies; nothing until both are chosen."""
    with create_app(board).server.app_context():
        assert runs.groups(None, "loss", "min", "", 0)[2] is True  # hidden: no key chosen
        data, defs, hidden, status = runs.groups("experiment", "loss", "min", "", 0)
        assert not hidden and status == ""
        assert [(row["value"], row["runs"], row["count"]) for row in data] == [
            (HOSTILE, 1, 1), ("cifar", 1, 1), ("mnist", 3, 3)]  # mnist: runs 1, 2 and the failed 4
        mnist = data[2]
        assert mnist["mean"] == pytest.approx(0.5) and (mnist["min"], mnist["max"]) == (0.2, 0.9)
        assert mnist["std"] == pytest.approx(statistics.stdev([0.4, 0.2, 0.9]))
        assert data[1]["std"] is None  # one run: no spread
        assert [d["field"] for d in defs] == ["value", "runs", "count", "mean", "std", "min", "max"]
        assert defs[3]["headerName"] == "mean loss.min"
        text, _ = runs_actions.check_filter("COMPLETED", "")
        completed = runs.groups("experiment", "loss", "min", text, 0)[0]
        assert [(row["value"], row["runs"], row["mean"]) for row in completed][2] == ("mnist", 2, pytest.approx(0.3))
        by_lr = runs.groups("config.lr", "loss", "last", "config.lr < 0.06", 0)[0]
        assert [(row["value"], row["mean"]) for row in by_lr] == [(0.001, 0.6), (0.01, 0.2), (0.05, 0.25)]
        assert "unknown metric 'los'" in runs.groups("config.lr", "los", "min", "", 0)[3]
        assert "did you mean 'config.lr'" in runs.groups("config.lrr", "loss", "min", "", 0)[3]


def test_sparkline_column_reads_a_few_points_for_the_page_in_one_read(board, monkeypatch):
    """Issue 15: a sparkline of a chosen metric per row: the column is saved, its points come with the rows,
    read for the page's rows at once (not per row), and it can be removed."""
    settings, message = runs.change_columns(board, runs.ADD_SPARK, None, None, None, None, None, [], "loss")
    assert message == "added a sparkline of loss" and settings.sparklines == ("loss",)
    defs = runs_actions.column_defs(board, settings)
    column = next(d for d in defs if d["colId"] == "sparkline:loss")
    assert column["cellRenderer"] == "Sparkline" and column["sortable"] is False
    reads = []
    real = board.store.sparklines
    monkeypatch.setattr(board.store, "sparklines", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    response = runs_actions.page_rows(board, request(), "", cols.spec(settings))
    assert reads == [[5, 4, 3, 2, 1]]
    lines = {row["id"]: row["sparkline:loss"] for row in response["rowData"]}
    assert lines[1] == [[0, 0.9], [1, 0.5], [2, 0.4]] and lines[4] == [[0, 0.9], [1, 2.0]]
    assert "sparkline:loss" not in runs_actions.page_rows(board, request(), "", spec())["rowData"][0]
    options = runs.extra_options(settings)["options"]
    assert {"label": "sparkline of loss", "value": "s:loss"} in options
    settings, _ = runs.change_columns(board, runs.EXTRA, None, None, None, [], None, defs)
    assert settings.sparklines == () and board.store.board_settings().sparklines == ()
