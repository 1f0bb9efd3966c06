"""The query language's tokenizer and recursive-descent parser (the grammar is in :mod:`sacred_gpu.read.query`).

A :class:`Parser` turns text into a tree of ``("and"|"or", children)``, ``("not", child)``, ``("leaf", filter)``
and ``("metric", MetricCondition, position)`` nodes, every leaf already a MongoDB filter of whitelisted operators.
"""

from __future__ import annotations

import datetime
import re
from typing import Any, NamedTuple

from sacred_gpu import schema
from sacred_gpu.read import regex_check
from sacred_gpu.read.query import (
    _INT64,
    _KEYWORDS,
    _LEX,
    _LITERALS,
    COMPARISONS,
    FIELDS,
    MAX_DEPTH,
    PREFIXES,
    ROLLUPS,
    TAGS,
    TIME_FIELDS,
    MetricCondition,
    QueryError,
    _parse_time,
    _status_name,
    as_shown,
    status_filter,
)


class _Token(NamedTuple):
    kind: str  # num, str, word, op, ( ) [ ] , or end
    text: str  # the source text (the decoded contents for a string)
    pos: int
    value: Any = None


def _describe(tok: _Token) -> str:
    if tok.kind == "end":
        return "end of query"
    return "string " + repr(tok.text) if tok.kind == "str" else repr(tok.text)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        quote = text[i]
        if quote in "\"'":
            j, chars = i + 1, []
            while True:
                if j >= n:
                    raise QueryError("unterminated string", position=i, text=text)
                if text[j] == "\\" and j + 1 < n and text[j + 1] in "\\\"'":
                    chars.append(text[j + 1])
                    j += 2
                elif text[j] == quote:
                    break
                else:
                    chars.append(text[j])
                    j += 1
            value = "".join(chars)
            tokens.append(_Token("str", value, i, value))
            i = j + 1
            continue
        match = _LEX.match(text, i)
        if match is None:
            raise QueryError(f"unexpected character {quote!r}", position=i, text=text)
        kind, source = match.lastgroup or "", match.group()
        if kind == "num":
            value = float(source) if any(c in source for c in ".eE") else int(source)
            if isinstance(value, int) and value not in _INT64:
                raise QueryError("integer out of range (64 bits)", position=i, text=text)
            tokens.append(_Token("num", source, i, value))
        elif kind == "op":
            if source not in COMPARISONS:
                raise QueryError(f"unknown operator {source!r}", position=i, text=text)
            tokens.append(_Token("op", source, i))
        elif kind != "ws":  # a word, or punctuation: its own kind
            tokens.append(_Token("word" if kind == "word" else source, source, i))
        i = match.end()
    tokens.append(_Token("end", "", n))
    return tokens


class Parser:
    """Recursive descent over the tokens, to a tree of ("and"|"or", [nodes]), ("not", node, pos),
    ("leaf", filter) and ("metric", MetricCondition, pos)."""

    def __init__(self, text: str, now: datetime.datetime | None, dead_after: float) -> None:
        self.text, self.tokens, self.i, self.depth = text, _tokenize(text), 0, 0
        if now is None:
            now = datetime.datetime.now(datetime.timezone.utc)
        if now.tzinfo is not None:
            now = now.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        self.now, self.dead_after = now, dead_after
        self.fields: list[tuple[str, str, Any]] = []  #: (path, operator, value) of each comparison

    def error(self, reason: str, tok: _Token) -> QueryError:
        return QueryError(reason, position=tok.pos, text=self.text)

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def next(self) -> _Token:
        tok = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def keyword(self, tok: _Token) -> str | None:
        return tok.text.lower() if tok.kind == "word" and tok.text.lower() in _KEYWORDS else None

    def parse(self) -> tuple:
        node = self.boolean("or")
        tok = self.peek()
        if tok.kind != "end":
            raise self.error(f"unexpected {_describe(tok)}", tok)
        return node

    def boolean(self, kind: str) -> tuple:
        """``or_expr`` (kind "or") or ``and_expr`` (kind "and"); nested chains of the same kind are flattened."""
        nodes: list[tuple] = []
        while True:
            node = self.boolean("and") if kind == "or" else self.unary()
            nodes.extend(node[1] if node[0] == kind else [node])
            if self.keyword(self.peek()) != kind:
                return nodes[0] if len(nodes) == 1 else (kind, nodes)
            self.next()

    def unary(self) -> tuple:
        """``not_expr``: ``not`` and parentheses each count one level of nesting."""
        tok = self.peek()
        if self.keyword(tok) != "not" and tok.kind != "(":
            return self.comparison()
        self.next()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"query nested too deeply (more than {MAX_DEPTH} levels)", tok)
        if tok.kind == "(":
            if self.peek().kind == ")":
                raise self.error("empty parentheses", tok)
            node = self.boolean("or")
            close = self.next()
            if close.kind != ")":
                raise self.error(f"expected ')' to close the '(' at position {tok.pos}, found {_describe(close)}",
                                 close)
        else:
            node = ("not", self.unary(), tok.pos)
        self.depth -= 1
        return node

    def comparison(self) -> tuple:
        ftok = self.next()
        if ftok.kind != "word" or ftok.text.lower() in _KEYWORDS:
            raise self.error(f"expected a field name, found {_describe(ftok)}", ftok)
        path, metric = self.field(ftok)
        optok = self.next()
        word = self.keyword(optok)
        value: Any = None
        if optok.kind == "op":
            op, value = COMPARISONS[optok.text], self.scalar(optok.text)
        elif word == "not":
            second = self.next()
            if self.keyword(second) == "in":
                op, value = "$nin", self.list("not in")
            elif self.keyword(second) == "exists":
                op, value = "$exists", False
            else:
                raise self.error(f"expected 'in' or 'exists' after 'not', found {_describe(second)}", second)
        elif word == "in":
            op, value = "$in", self.list("in")
        elif word in ("contains", "matches"):
            op, value = word, self.scalar(word)
        elif word == "exists":
            op, value = "$exists", True
        else:
            raise self.error(f"unknown operator {_describe(optok)} after {ftok.text!r} (expected ==, !=, <, <=, >, "
                             ">=, in, not in, contains, matches, exists or not exists)", optok)
        if metric is not None:
            if op not in COMPARISONS.values():
                raise self.error(f"metric condition {ftok.text!r} only supports ==, !=, <, <=, >, >=", optok)
            number, vtok = value
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise self.error(f"metric condition {ftok.text!r} needs a number", vtok)
            return ("metric", MetricCondition(metric[0], metric[1], op, float(number)), ftok.pos)
        return ("leaf", self.leaf(path, op, value, optok))

    def field(self, tok: _Token) -> tuple[str, tuple[str, str] | None]:
        """The document path of a field name, or ("", (metric name, roll-up)) for a metric roll-up."""
        word = tok.text
        if "$" in word:
            raise QueryError("field names may not contain '$'", position=tok.pos + word.index("$"), text=self.text)
        segments, offset = word.split("."), tok.pos
        for segment in segments:
            if not segment:
                raise QueryError("empty segment in a field name", position=offset, text=self.text)
            offset += len(segment) + 1
        if len(segments) == 1 and word.lower() in FIELDS:
            return FIELDS[word.lower()], None
        if len(segments) > 1 and segments[0] in PREFIXES:
            return word, None
        if len(segments) > 1 and segments[-1].lower() in ROLLUPS:
            return "", (".".join(segments[:-1]), segments[-1].lower())
        raise self.error(f"unknown field {word!r}: use one of {', '.join(FIELDS)}, a path under "
                         f"{', '.join(p + '.' for p in sorted(PREFIXES))} or a metric roll-up like "
                         f"{word}.min (roll-ups: {', '.join(ROLLUPS)})", tok)

    def scalar(self, after: str, in_list: bool = False) -> tuple[Any, _Token]:
        tok = self.next()
        if tok.kind in ("num", "str"):
            return tok.value, tok
        if tok.kind == "word" and tok.text.lower() in _LITERALS:
            return _LITERALS[tok.text.lower()], tok
        if tok.kind == "word" and tok.text.lower() not in _KEYWORDS:
            return tok.text, tok
        if tok.kind == "[":
            raise self.error("lists cannot be nested" if in_list else "a list is only allowed after 'in' or 'not in'",
                             tok)
        raise self.error(f"expected a value after {after!r}, found {_describe(tok)}", tok)

    def list(self, after: str) -> tuple[list[tuple[Any, _Token]], _Token]:
        opening = self.next()
        if opening.kind != "[":
            raise self.error(f"expected a list [...] after {after!r}, found {_describe(opening)}", opening)
        items = []
        while self.peek().kind != "]":
            items.append(self.scalar(after, in_list=True))
            separator = self.peek()
            if separator.kind == ",":
                self.next()
            elif separator.kind != "]":
                raise self.error(f"expected ',' or ']' in the list opened at position {opening.pos}, found "
                                 f"{_describe(separator)}", separator)
        self.next()
        return items, opening

    def leaf(self, path: str, op: str, value: Any, optok: _Token) -> dict:
        """The filter of one comparison on a document path, on the value the runs table shows (:func:`as_shown`)."""
        if path not in ("status", "_id"):
            self.fields.append((path, op, value if op in ("$in", "$nin") or not isinstance(value, tuple) else value[0]))
        return as_shown(path, op, lambda where, how: self.comparison_filter(where, how, value, optok))

    def comparison_filter(self, path: str, op: str, value: Any, optok: _Token) -> dict:
        """The filter of one comparison on a document path, as written."""
        if op == "$exists":
            return {path: {"$exists": value}}
        if path == "status" and op in ("$eq", "$ne", "$in", "$nin"):
            return self.status(op, value)
        if op in ("$in", "$nin"):
            return {path: {op: [self.convert(path, v, tok) for v, tok in value[0]]}}
        value, tok = value
        if op in ("contains", "matches"):
            if path == "_id" or path in TIME_FIELDS:
                raise self.error(f"{op!r} does not apply to {path}", optok)
            pattern = value if tok.kind == "str" else tok.text
            if op == "contains" and path == TAGS:
                return {path: pattern}
            if "\x00" in pattern:
                raise self.error("a pattern may not contain NUL characters", tok)
            if op == "contains":
                return {path: {"$regex": re.escape(pattern)}}
            refused = regex_check.problem(pattern)  # invalid, too long, or catastrophic backtracking
            if refused:
                raise self.error(refused, tok)
            return {path: {"$regex": pattern}}
        value = self.convert(path, value, tok)
        return {path: value} if op == "$eq" else {path: {op: value}}

    def status(self, op: str, value: Any) -> dict:
        """A status comparison as the runs table shows statuses (:func:`status_filter`)."""
        names = [_status_name(item) for item, _ in (value[0] if op in ("$in", "$nin") else [value])]
        return status_filter(op, names, self.now, self.dead_after)

    def convert(self, path: str, value: Any, tok: _Token) -> Any:
        """A value as stored at ``path``: integer ids, datetimes for time fields."""
        if path == "_id" and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.error(f"id must be an integer, not {_describe(tok)}", tok)
        if path in TIME_FIELDS and value is not None:
            moment = _parse_time(value) if isinstance(value, str) else None
            if moment is None:
                raise self.error(f"expected a date like \"2026-01-02\" or \"2026-01-02T10:00:00\" for {path}, found "
                                 f"{_describe(tok)}", tok)
            return moment
        if path == "status" and isinstance(value, str) and value.upper() == schema.PROBABLY_DEAD:
            raise self.error("PROBABLY_DEAD can only be compared with ==, !=, in or not in", tok)
        return value


