"""Previews of a run's artifacts, bounded in size, the zip of them all, and the streamed download of large ones.

Images and videos become ``data:`` URIs of their bytes; text is shown as text; CSV as a client-side grid of its
first rows; HTML only inside an iframe with an empty ``sandbox`` (no script, no same-origin access, no forms, no top
navigation), so nothing an artifact holds runs in the board's origin. Each kind reads at most its cap.
"""

from __future__ import annotations

import base64
import csv
import io
import mimetypes
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import dash_ag_grid as dag
from dash import html
from flask import Response

from dashboard.run_parts import bytes_text
from sacred_gpu.read import NotFound, ReadError, RunStore

MIB = 1024 * 1024
#: Largest file (bytes) previewed, per kind; text and CSV show their first bytes of larger files.
IMAGE_BYTES = 5 * MIB
VIDEO_BYTES = 20 * MIB
HTML_BYTES = 2 * MIB
TEXT_BYTES = 64 * 1024
CSV_BYTES = 256 * 1024
#: Rows of a CSV file shown as a table.
CSV_ROWS = 200
#: Largest single download (bytes) and largest zip of all artifacts sent through the page.
DOWNLOAD_BYTES = 200 * MIB
#: Flask route streaming one artifact from GridFS, for files larger than the page sends (``DOWNLOAD_BYTES``).
STREAM_ROUTE = "/download/run/<run_id>/artifact/<path:name>"

_TEXT_TYPES = {"application/json", "application/xml", "application/x-yaml", "application/yaml",
               "application/x-sh", "application/javascript", "application/x-ndjson"}
_SAFE_TYPE = re.compile(r"^[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*$")


def content_type(name: str, stored: str | None) -> str:
    """The artifact's media type: the one stored in GridFS, else guessed from its name; only ``type/subtype``
    made of safe characters (it goes into ``data:`` URIs), else ``application/octet-stream``."""
    for candidate in (stored, mimetypes.guess_type(name)[0]):
        if isinstance(candidate, str):
            candidate = candidate.split(";")[0].strip().lower()
            if _SAFE_TYPE.match(candidate):
                return candidate
    return "application/octet-stream"


def kind(name: str, media_type: str) -> str:
    """How an artifact is previewed: ``image``, ``video``, ``html``, ``csv``, ``text`` or ``other``."""
    lowered = name.lower()
    if media_type.startswith("image/"):
        return "image"
    if media_type.startswith("video/"):
        return "video"
    if media_type in ("text/html", "application/xhtml+xml") or lowered.endswith((".html", ".htm")):
        return "html"
    if media_type in ("text/csv", "application/csv") or lowered.endswith(".csv"):
        return "csv"
    if media_type.startswith("text/") or media_type in _TEXT_TYPES or media_type.endswith(("+json", "+xml")):
        return "text"
    return "other"


def _note(text: str) -> html.P:
    return html.P(text, className="preview-note")


def data_uri(media_type: str, data: bytes) -> str:
    """``data:<type>;base64,...`` of ``data``."""
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def looks_like_text(head: bytes) -> bool:
    """Whether the first bytes of a file read as UTF-8 text (no NUL; a character cut at the end is allowed)."""
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.start >= len(head) - 3
    return True


def csv_table(text: str, complete: bool) -> tuple[dag.AgGrid | None, int]:
    """The first :data:`CSV_ROWS` rows of CSV ``text`` (its first row as the header) as a table of text cells, and
    the rows shown. ``complete`` = False drops the last line, which the cap may have cut."""
    lines = text.splitlines()
    if not complete and lines:
        lines.pop()
    try:
        dialect: Any = csv.Sniffer().sniff("\n".join(lines[:20]), delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = []
    for row in csv.reader(lines, dialect):
        rows.append(row)
        if len(rows) > CSV_ROWS:
            break
    if not rows:
        return None, 0
    head, body = rows[0], rows[1:CSV_ROWS + 1]
    width = max(len(r) for r in [head, *body])
    columns = [{"headerName": head[i] if i < len(head) and head[i] else f"column {i + 1}", "field": f"c{i}"}
               for i in range(width)]
    data = [{f"c{i}": value for i, value in enumerate(row)} for row in body]
    table = dag.AgGrid(columnDefs=columns, rowData=data, className="ag-theme-quartz artifact-csv",
                       defaultColDef={"sortable": True, "resizable": True, "filter": False},
                       dashGridOptions={"suppressFieldDotNotation": True, "enableCellTextSelection": True},
                       style={"height": f"{min(420, 52 + 42 * max(1, len(data)))}px", "width": "100%"})
    return table, len(body)


def preview(name: str, length: int | None, stored_type: str | None, read: Callable[[int], bytes]) -> list[Any]:
    """Components previewing one artifact of ``length`` bytes. ``read(n)`` returns its first ``n`` bytes; it is
    called once, for at most the kind's cap."""
    media = content_type(name, stored_type)
    what = kind(name, media)
    size = length or 0
    data: bytes | None = None
    if what == "other":
        head = read(min(size, TEXT_BYTES)) if size else b""
        if not head or not looks_like_text(head):
            return [_note(f"No preview for {media} ({bytes_text(length)}): download it.")]
        what, data = "text", head
    caps = {"image": IMAGE_BYTES, "video": VIDEO_BYTES, "html": HTML_BYTES}
    if what in caps:
        if size > caps[what]:
            return [_note(f"{bytes_text(length)}: too large to preview here (up to {bytes_text(caps[what])}); "
                          "download it.")]
        data = read(size)
        if what == "image":
            return [html.Img(src=data_uri(media, data), alt=name, className="artifact-image")]
        if what == "video":
            return [html.Video(src=data_uri(media, data), controls=True, className="artifact-video")]
        return [html.Iframe(srcDoc=_decode(data), sandbox="", referrerPolicy="no-referrer",
                            className="artifact-html", title=name),
                _note("HTML shown in a sandbox: its scripts do not run.")]
    if what == "csv":
        data = read(min(size, CSV_BYTES))
        table, shown = csv_table(_decode(data), complete=size <= CSV_BYTES)
        cut = size > CSV_BYTES or shown >= CSV_ROWS
        notes = [_note(f"The first {shown:,} rows shown; download the file for the rest.")] if cut else []
        return ([table] if table is not None else [_note("An empty CSV file.")]) + notes
    if data is None:
        data = read(min(size, TEXT_BYTES))
    notes = [_note(f"The first {bytes_text(TEXT_BYTES)} of {bytes_text(length)} shown; download it for the rest.")] \
        if size > TEXT_BYTES else []
    return [html.Pre(_decode(data[:TEXT_BYTES]), className="artifact-text")] + notes


def archive_name(name: str) -> str:
    """A safe path inside a zip for an artifact name: no absolute path, no ``..``."""
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".", "..")]
    return "/".join(parts) or "artifact"


def zip_bytes(files: Iterable[tuple[str, bytes]]) -> bytes:
    """A zip (deflated) of ``(name, content)`` pairs, built in memory; repeated names get a ``-2``, ``-3``..."""
    buffer = io.BytesIO()
    seen: set[str] = set()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files:
            path, number = archive_name(name), 2
            base = path
            while path in seen:
                stem, dot, ext = base.rpartition(".")
                path = f"{stem}-{number}.{ext}" if dot and stem else f"{base}-{number}"
                number += 1
            seen.add(path)
            archive.writestr(path, content)
    return buffer.getvalue()


def stream_url(run_id: Any, name: str) -> str:
    """The URL of :data:`STREAM_ROUTE` for one artifact."""
    return f"/download/run/{quote(str(run_id), safe='')}/artifact/{quote(name, safe='')}"


def stream_artifact(store: RunStore, run_id: Any, name: str) -> Response:
    """One artifact streamed from GridFS chunk by chunk (any size, constant memory). Always an attachment of type
    ``application/octet-stream`` with ``nosniff``: a hostile HTML artifact is saved, never rendered by the board."""
    try:
        handle = store.open_artifact(run_id, name)
    except NotFound:
        return Response(f"run {run_id} has no artifact {name} (or its file is missing)\n", 404, mimetype="text/plain")
    except ReadError as error:
        return Response(f"{error}\n", 503, mimetype="text/plain")

    def chunks() -> Iterator[bytes]:
        yield from handle

    filename = quote(archive_name(name).rsplit("/", 1)[-1])
    return Response(chunks(), mimetype="application/octet-stream", headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{filename}", "Content-Length": str(handle.length),
        "X-Content-Type-Options": "nosniff"})


def summary(files: Iterable[Mapping[str, Any]]) -> str:
    """``3 artifacts, 1.2 MB`` for a list of ``RunStore.artifact_files`` entries."""
    files = list(files)
    total = sum(f.get("length") or 0 for f in files)
    return f"{len(files)} artifact{'s' if len(files) != 1 else ''}, {bytes_text(total)}"
