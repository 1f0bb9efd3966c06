"""What the run page's callbacks do, as plain functions the tests call: the output refreshed or searched, tags and
notes saved, sources and artifacts viewed and downloaded."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from dash import dcc, html

from dashboard import run_artifacts as arts
from dashboard import run_parts as parts
from dashboard.board import Board
from dashboard.columns import parse_tags
from dashboard.run_output import marker_note, output_lines

logger = logging.getLogger(__name__)

#: Statuses whose output may still grow (a run without a recent heartbeat may beat again).
LIVE_STATUSES = ("RUNNING", "PROBABLY_DEAD")


def shown_status(board: Board, run_id: Any) -> str:
    """The run's status as the table shows it (the dead rule applied); ``DELETED`` where it is gone."""
    frame = board.store.runs(ids=[run_id], limit=1)
    return str(frame.iloc[0]["status"]) if not frame.empty else "DELETED"


def refresh_output(board: Board, run_id: Any, query: str | None) -> dict[str, Any]:
    """The output tab re-read: ``lines``, ``summary``, ``cut`` (the truncation note), ``live`` (whether to keep
    polling) and ``note`` (what the tab says beside the output; the header owns the run's status)."""
    status = shown_status(board, run_id)
    text = board.store.captured_out(run_id) if status != "DELETED" else ""
    lines, summary = output_lines(text, query or "")
    return {"lines": lines, "summary": summary, "cut": marker_note(text), "live": status in LIVE_STATUSES,
            "note": "the run was deleted" if status == "DELETED" else ""}


def save_tags_notes(board: Board, run_id: Any, tags: str | None, notes: str | None) -> str:
    """Save the edited tags (comma-separated) and notes; returns a message for the user."""
    if board.read_only:
        return "read-only board: edits are not saved"
    board.store.set_tags(run_id, parse_tags(tags))
    board.store.set_notes(run_id, str(notes or ""))
    return "saved tags and notes"


def source_view(board: Board, run_id: Any, path: str, sources: Mapping[str, Any] | None = None) -> list[Any]:
    """A source file with syntax highlighting (at most :data:`run_artifacts.TEXT_BYTES` x 4 shown); ``sources``:
    the run's ``{path: file id}`` where the page already read them."""
    data = board.store.source(run_id, path, sources)
    cap = 4 * arts.TEXT_BYTES
    note = [html.P(f"The first {parts.bytes_text(cap)} of {parts.bytes_text(len(data))} shown; download it for the "
                   "rest.", className="preview-note")] if len(data) > cap else []
    return [parts.code_view(path, data[:cap].decode("utf-8", errors="replace")), *note]


def artifact_view(board: Board, run_id: Any, name: str, info: Mapping[str, Any] | None = None) -> list[Any]:
    """The preview of one artifact (``info``: its ``RunStore.artifact_files`` entry, when known), reading at most
    its kind's cap from GridFS."""
    info = info or next((f for f in board.store.artifact_files(run_id) if f["name"] == name), None)
    if info is None:
        return [html.P(f"Run {run_id} has no artifact {name!r} any more.", className="preview-note")]
    handle = board.store.open_artifact(run_id, name, info.get("file_id"))
    return arts.preview(name, info.get("length"), info.get("content_type"), handle.read)


def download_source(board: Board, run_id: Any, path: str) -> dict[str, Any]:
    """``dcc.Download`` data of a source file, named as its base name."""
    return dcc.send_bytes(board.store.source(run_id, path), path.replace("\\", "/").rsplit("/", 1)[-1] or "source")


def download_artifact(board: Board, run_id: Any, name: str) -> tuple[dict[str, Any] | None, str]:
    """``dcc.Download`` data of one artifact and a message; None and the reason past :data:`DOWNLOAD_BYTES`."""
    info = next((f for f in board.store.artifact_files(run_id) if f["name"] == name), None)
    if info is None:
        return None, f"no artifact {name!r}"
    if (info.get("length") or 0) > arts.DOWNLOAD_BYTES:
        return None, f"{name} is {parts.bytes_text(info['length'])}: download it from {arts.stream_url(run_id, name)}"
    data = board.store.artifact(run_id, name)
    return dcc.send_bytes(data, arts.archive_name(name).rsplit("/", 1)[-1]), f"downloading {name}"


def download_zip(board: Board, run_id: Any) -> tuple[dict[str, Any] | None, str]:
    """``dcc.Download`` data of a zip of every artifact (``run-<id>-artifacts.zip``) and a message."""
    files = board.store.artifact_files(run_id)
    total = sum(f.get("length") or 0 for f in files)
    if not files:
        return None, "no artifacts"
    if total > arts.DOWNLOAD_BYTES:
        return None, (f"the artifacts hold {parts.bytes_text(total)}: larger than the board zips "
                      f"({parts.bytes_text(arts.DOWNLOAD_BYTES)}); download them one by one")
    archive = arts.zip_bytes((f["name"], board.store.artifact(run_id, f["name"])) for f in files)
    return dcc.send_bytes(archive, f"run-{run_id}-artifacts.zip"), f"zipped {arts.summary(files)}"


def download_output(board: Board, run_id: Any) -> dict[str, Any]:
    """``dcc.Download`` data of the captured output as stored (``run-<id>-output.txt``)."""
    return dcc.send_string(board.store.captured_out(run_id), f"run-{run_id}-output.txt", type="text/plain")
