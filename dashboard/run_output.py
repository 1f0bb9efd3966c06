"""A run's captured output as components: ANSI colours as spans with classes, a search that keeps matching lines
and highlights the matches, the observer's truncation marker made visible, and a bounded number of lines.

Every string of the output goes into components as text (never as HTML), so hostile output stays text.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace
from typing import Any

from dash import html

from sacred_gpu.read import OUTPUT_CUT

#: Lines shown from the start and from the end of the output when not searching (the middle is summarised).
HEAD_LINES = 100
TAIL_LINES = 2000
#: Lines shown around each truncation marker of the observer.
MARKER_CONTEXT = 2
#: Matching lines shown for a search.
MAX_MATCHES = 1000
#: Characters shown of one line; longer lines end with a note.
LINE_CHARS = 10_000

#: CSI sequences (colours, cursor moves, erases), OSC sequences (titles, links), character-set choices and
#: two-character escapes.
_ESCAPE = re.compile(r"\x1b\[([0-9;:?<=>]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[()*+][0-~]"
                     r"|\x1b[@-Z\\-_=>78]")
_MARKER = OUTPUT_CUT


@dataclass(frozen=True)
class Style:
    """SGR state: ``fg``/``bg`` are a palette index 0-15 (a class) or a CSS colour (an inline style)."""

    bold: bool = False
    dim: bool = False
    italic: bool = False
    underline: bool = False
    fg: int | str | None = None
    bg: int | str | None = None

    def classes(self) -> str:
        names = [name for name, on in (("ansi-bold", self.bold), ("ansi-dim", self.dim),
                                       ("ansi-italic", self.italic), ("ansi-underline", self.underline)) if on]
        names += [f"ansi-{side}-{value}" for side, value in (("fg", self.fg), ("bg", self.bg))
                  if isinstance(value, int)]
        return " ".join(names)

    def css(self) -> dict[str, str]:
        return {prop: value for prop, value in (("color", self.fg), ("backgroundColor", self.bg))
                if isinstance(value, str)}


PLAIN = Style()


def _palette(index: int) -> int | str:
    """A 256-colour index as a class index (0-15) or a CSS colour."""
    if index < 16:
        return index
    if index < 232:
        index -= 16
        levels = [0 if v == 0 else 55 + 40 * v for v in (index // 36, index // 6 % 6, index % 6)]
        return "rgb({},{},{})".format(*levels)
    grey = 8 + 10 * (index - 232)
    return f"rgb({grey},{grey},{grey})"


def apply_sgr(style: Style, params: str) -> Style:
    """``style`` after one SGR sequence (``ESC [ params m``)."""
    codes = [int(p) if p.isdigit() else 0 for p in params.replace(":", ";").split(";")] if params else [0]
    i = 0
    while i < len(codes):
        code = codes[i]
        if code == 0:
            style = PLAIN
        elif code in (1, 2, 3, 4):
            style = replace(style, **{{1: "bold", 2: "dim", 3: "italic", 4: "underline"}[code]: True})
        elif code == 22:
            style = replace(style, bold=False, dim=False)
        elif code in (23, 24):
            style = replace(style, **{{23: "italic", 24: "underline"}[code]: False})
        elif 30 <= code <= 37 or 90 <= code <= 97 or 40 <= code <= 47 or 100 <= code <= 107:
            side = "fg" if code % 100 < 40 or 90 <= code <= 97 else "bg"
            style = replace(style, **{side: code % 10 + (8 if code >= 90 else 0)})
        elif code in (39, 49):
            style = replace(style, **{"fg" if code == 39 else "bg": None})
        elif code in (38, 48) and i + 1 < len(codes):
            side = "fg" if code == 38 else "bg"
            if codes[i + 1] == 5 and i + 2 < len(codes):
                style, i = replace(style, **{side: _palette(min(codes[i + 2], 255))}), i + 2
            elif codes[i + 1] == 2 and i + 4 < len(codes):
                rgb = ",".join(str(min(c, 255)) for c in codes[i + 2:i + 5])
                style, i = replace(style, **{side: f"rgb({rgb})"}), i + 4
        i += 1
    return style


def strip_ansi(text: str) -> str:
    """``text`` without escape sequences."""
    return _ESCAPE.sub("", text)


def segments(line: str, style: Style) -> tuple[list[tuple[str, Style]], Style]:
    """One line as ``[(text, style)]`` and the style after it. A carriage return starts the line over (progress
    bars): only what follows the last one that has text after it is kept."""
    parts = [part for part in line.split("\r")]
    keep = max((i for i, part in enumerate(parts) if strip_ansi(part)), default=len(parts) - 1)
    out: list[tuple[str, Style]] = []
    for index, part in enumerate(parts):
        position = 0
        for match in _ESCAPE.finditer(part):
            if index == keep and match.start() > position:
                out.append((part[position:match.start()], style))
            if match.group(2) == "m":
                style = apply_sgr(style, match.group(1))
            position = match.end()
        if index == keep and position < len(part):
            out.append((part[position:], style))
    return out, style


def _pieces(parts: list[tuple[str, Style]], query: str) -> list[Any]:
    """Components of one line; the case-insensitive matches of ``query`` wrapped in ``<mark>``."""
    plain = "".join(text for text, _ in parts)
    marks: list[tuple[int, int]] = []
    if query:
        lowered, needle = plain.lower(), query.lower()
        start = lowered.find(needle)
        while start >= 0:
            marks.append((start, start + len(needle)))
            start = lowered.find(needle, start + len(needle))
    cuts = sorted({0, len(plain), *(edge for span in marks for edge in span)})
    children: list[Any] = []
    offset = 0
    for text, style in parts:
        end = offset + len(text)
        for a, b in itertools.pairwise(cuts):
            lo, hi = max(a, offset), min(b, end)
            if lo >= hi:
                continue
            piece: Any = text[lo - offset:hi - offset]
            if style != PLAIN:
                piece = html.Span(piece, className=style.classes() or None, style=style.css() or None)
            if any(m0 <= lo and hi <= m1 for m0, m1 in marks):
                piece = html.Mark(piece, className="out-match")
            children.append(piece)
        offset = end
    return children


def _line(number: int, parts: list[tuple[str, Style]], query: str) -> html.Div:
    length = sum(len(text) for text, _ in parts)
    if length > LINE_CHARS:
        kept, budget = [], LINE_CHARS
        for text, style in parts:
            if budget > 0:
                kept.append((text[:budget], style))
            budget -= len(text)
        parts = kept + [(f" … ({length - LINE_CHARS:,} more characters on this line)", Style(dim=True))]
    return html.Div(_pieces(parts, query) or "\u200b", className="out-line", **{"data-n": number})


def _gap(count: int, what: str) -> html.Div:
    return html.Div(f"… {count:,} {what} not shown here: search, or download the whole output …",
                    className="out-gap")


def marker_note(text: str) -> html.Div | None:
    """A visible note when the observer cut the output (``output_cap``), else None."""
    found = _MARKER.search(text or "")
    if found is None:
        return None
    cut, cap = int(found.group(1)), int(found.group(2))
    return html.Div(f"The observer cut {cut:,} characters from the middle of this output (output_cap={cap:,}): "
                    "the start and the end are kept, with a marker where the cut is.", className="out-cut-note")


def output_lines(text: str, query: str = "") -> tuple[list[html.Div], str]:
    """The output as line components and a one-line summary. Without ``query``: the first :data:`HEAD_LINES`, the
    lines around the truncation marker and the last :data:`TAIL_LINES`; with it: the lines that contain it
    (case-insensitive, colours ignored), at most :data:`MAX_MATCHES`, matches highlighted."""
    lines = (text or "").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    query = (query or "").strip()
    plain = [strip_ansi(line) for line in lines]
    if query:
        needle = query.lower()
        wanted = [i for i, line in enumerate(plain) if needle in line.lower()]
        summary = f"{len(wanted):,} of {len(lines):,} lines match"
        if len(wanted) > MAX_MATCHES:
            summary += f" (the first {MAX_MATCHES:,} shown)"
            wanted = wanted[:MAX_MATCHES]
    else:
        markers = [i for i, line in enumerate(plain) if _MARKER.fullmatch(line.strip())]
        shown = set(range(min(HEAD_LINES, len(lines)))) | set(range(max(0, len(lines) - TAIL_LINES), len(lines)))
        for i in markers:
            shown |= set(range(max(0, i - MARKER_CONTEXT), min(len(lines), i + MARKER_CONTEXT + 1)))
        wanted = sorted(shown)
        summary = f"{len(lines):,} lines" + (f", {len(lines) - len(wanted):,} not shown" if len(wanted) < len(lines)
                                             else "")
    children: list[html.Div] = []
    style, previous, position = PLAIN, -1, 0
    for index in wanted:
        for skipped in lines[position:index]:  # carry colours through lines not shown
            if "\x1b" in skipped:
                style = segments(skipped, style)[1]
        if not query and index > previous + 1:
            children.append(_gap(index - previous - 1, "lines"))
        parts, style = segments(lines[index], style)
        if _MARKER.fullmatch(plain[index].strip()):
            children.append(html.Div(plain[index].strip(), className="out-line out-marker", **{"data-n": index + 1}))
        else:
            children.append(_line(index + 1, parts, query))
        previous, position = index, index + 1
    if not lines:
        children.append(html.Div("no output captured", className="out-gap"))
    return children, summary
