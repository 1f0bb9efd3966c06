"""Filters on runs: a small query language for people, and MongoDB filter documents limited to a whitelist.

Both compile to a :class:`Query` whose ``runs`` filter can never make the server run code: the language only emits
the operators in :data:`COMPILED_OPERATORS`, and dict filters are checked against :data:`FILTER_OPERATORS` at any
depth (``$where``, ``$function``, ``$accumulator``, ``$expr`` and every other operator are refused).

Grammar (keywords are case-insensitive; ``and`` binds tighter than ``or``)::

    query      = [ or_expr ] END
    or_expr    = and_expr { "or" and_expr }
    and_expr   = not_expr { "and" not_expr }
    not_expr   = "not" not_expr | "(" or_expr ")" | comparison
    comparison = FIELD ( CMP scalar | [ "not" ] "in" list | "contains" scalar | "matches" scalar
                       | [ "not" ] "exists" )
    CMP        = "==" | "!=" | "<" | "<=" | ">" | ">="
    list       = "[" [ scalar { "," scalar } [ "," ] ] "]"
    scalar     = NUMBER | STRING | WORD | "true" | "false" | "null"
"""

from __future__ import annotations

import datetime
import logging
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from bson.code import Code
from bson.objectid import ObjectId
from bson.regex import Regex

from sacred_gpu import schema
from sacred_gpu.read_errors import BadQuery

logger = logging.getLogger(__name__)

MAX_LENGTH = 10_000  #: characters in a text query
MAX_DEPTH = 50  #: nesting: parentheses and ``not`` in text, documents and lists in dict filters
MAX_NODES = 100_000  #: values in a dict filter
ROLLUPS = ("min", "max", "mean", "last", "first")
COMPARISONS = {"==": "$eq", "!=": "$ne", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}
#: The only operators the query language ever emits.
COMPILED_OPERATORS = frozenset(
    {"$and", "$or", "$nor", "$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$in", "$nin", "$exists", "$regex", "$options"}
)
#: The only operators a dict filter may use, at any depth.
FILTER_OPERATORS = COMPILED_OPERATORS | {"$not", "$all", "$elemMatch", "$size", "$type", "$mod"}
#: Field names of the language and the document paths they stand for.
FIELDS = {
    "id": "_id", "status": "status", "experiment": "experiment.name", "command": "command", "tags": "omniboard.tags",
    "notes": "omniboard.notes", "host": "host.hostname", "result": "result", "start": "start_time",
    "stop": "stop_time", "heartbeat": "heartbeat", "comment": "meta.comment",
}
#: Dotted paths starting with one of these are used as written.
PREFIXES = frozenset({"config", "info", "meta", "host", "experiment", "system", "omniboard"})
TIME_FIELDS = frozenset({"start_time", "stop_time", "heartbeat"})
TAGS = "omniboard.tags"
_KEYWORDS = frozenset({"and", "or", "not", "in", "contains", "matches", "exists"})
_LITERALS = {"true": True, "false": False, "null": None}
_INT64 = range(-(2**63), 2**63)
_LEX = re.compile(
    r"""(?P<ws>\s+)
      |(?P<num>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)(?![\w\-/.$])
      |(?P<word>[\w$][\w\-/.$]*)
      |(?P<op>[=!<>~]+)
      |(?P<punct>[()\[\],])""",
    re.VERBOSE,
)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{3}(?:[0-9]{3})?)?)?)?"
                   r"(?:Z|[+-][0-9]{2}:[0-9]{2})?")
_SCALARS = (str, int, float, type(None), datetime.datetime, re.Pattern, ObjectId, Regex)
_SAFE_MARKERS = (ObjectId._type_marker, Regex._type_marker, 18)  # bson type markers; 18: Int64


class QueryError(BadQuery):
    """A filter that cannot be used; the message says what and where (for text: the character position, with a caret
    line; for dict filters: the path in the document)."""

    position: int | None
    path: str | None

    def __init__(self, reason: str, *, position: int | None = None, path: str | None = None,
                 text: str | None = None) -> None:
        self.reason, self.position, self.path = reason, position, path
        message = reason
        if position is not None:
            message = f"{reason} at position {position}"
            if text is not None:
                message += "\n" + _excerpt(text, position)
        elif path is not None:
            message = f"{reason} at {path or 'the top level'}"
        super().__init__(message)


@dataclass(frozen=True)
class MetricCondition:
    """A condition on a rolled-up metric series, e.g. ``val_loss.min < 0.3``."""

    name: str
    rollup: str
    op: str
    value: float


@dataclass(frozen=True)
class Query:
    """A compiled filter: ``runs`` on the runs collection, AND every one of ``metrics``."""

    runs: dict
    metrics: tuple[MetricCondition, ...] = ()


def _excerpt(text: str, position: int, width: int = 40) -> str:
    """The text around ``position`` (control characters blanked) and a caret line under it."""
    start, end = max(0, position - width), min(len(text), position + width)
    prefix, suffix = ("..." if start else ""), ("..." if end < len(text) else "")
    shown = "".join(c if c.isprintable() else " " for c in text[start:end])
    return f"  {prefix}{shown}{suffix}\n  {' ' * (len(prefix) + position - start)}^"


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


def _parse_time(value: str) -> datetime.datetime | None:
    """``2026-01-02`` or ``2026-01-02T10:00:00`` (an offset or ``Z`` is converted) as a naive UTC datetime."""
    if not _DATE.fullmatch(value):
        return None
    try:
        moment = datetime.datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        return None
    return moment.astimezone(datetime.timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


class _Parser:
    """Recursive descent over the tokens, to a tree of ("and"|"or", [nodes]), ("not", node, pos),
    ("leaf", filter) and ("metric", MetricCondition, pos)."""

    def __init__(self, text: str, now: datetime.datetime | None, dead_after: float) -> None:
        self.text, self.tokens, self.i, self.depth = text, _tokenize(text), 0, 0
        if now is None:
            now = datetime.datetime.now(datetime.timezone.utc)
        if now.tzinfo is not None:
            now = now.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        self.now, self.dead_after = now, dead_after

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
        """The filter of one comparison on a document path."""
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
            try:
                re.compile(pattern)
            except re.error as exc:
                raise self.error(f"invalid regular expression {pattern!r}: {exc.msg}", tok) from None
            return {path: {"$regex": pattern}}
        value = self.convert(path, value, tok)
        return {path: value} if op == "$eq" else {path: {op: value}}

    def status(self, op: str, value: Any) -> dict:
        """A status comparison as the runs table shows statuses (any case): RUNNING means alive, PROBABLY_DEAD a
        RUNNING run past the dead rule (:func:`schema.probably_dead_filter`)."""
        names = [_status_name(item) for item, _ in (value[0] if op in ("$in", "$nin") else [value])]
        if not {schema.RUNNING, schema.PROBABLY_DEAD} & set(names):
            if op in ("$in", "$nin"):
                return {"status": {op: names}}
            return {"status": names[0]} if op == "$eq" else {"status": {"$ne": names[0]}}
        dead = schema.probably_dead_filter(self.now, self.dead_after)
        alive = {"$and": [{"status": schema.RUNNING}, {"$nor": [dead]}]}
        conditions = [dead if name == schema.PROBABLY_DEAD else alive if name == schema.RUNNING else {"status": name}
                      for name in names]
        match = conditions[0] if len(conditions) == 1 else {"$or": conditions}
        return match if op in ("$eq", "$in") else {"$nor": [match]}

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


def _status_name(value: Any) -> Any:
    """A status as stored, whatever its case (``completed`` is COMPLETED); another value as it is."""
    name = value.upper() if isinstance(value, str) else value
    return name if name in (*schema.STATUSES, schema.PROBABLY_DEAD) else value


def _to_filter(node: tuple, text: str) -> dict:
    """The filter of a node under ``or`` or ``not``, where metric conditions cannot be."""
    if node[0] == "leaf":
        return node[1]
    if node[0] == "metric":
        raise QueryError("metric conditions can only be combined with 'and' (not under 'or' or 'not')",
                         position=node[2], text=text)
    if node[0] == "not":
        return {"$nor": [_to_filter(node[1], text)]}
    return {"$" + node[0]: [_to_filter(child, text) for child in node[1]]}


def parse(text: str, *, now: datetime.datetime | None = None, dead_after: float = schema.DEAD_AFTER) -> Query:
    """Compile a text query; ``now`` (default: UTC now) and ``dead_after`` seconds define PROBABLY_DEAD."""
    if not isinstance(text, str):
        raise QueryError(f"a query must be text, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise QueryError(f"query too long: {len(text)} characters (the limit is {MAX_LENGTH})")
    if not text.strip():
        return Query({})
    node = _Parser(text, now, dead_after).parse()
    chain = node[1] if node[0] == "and" else [node]
    metrics = tuple(child[1] for child in chain if child[0] == "metric")
    conditions = [_to_filter(child, text) for child in chain if child[0] != "metric"]
    runs = {} if not conditions else conditions[0] if len(conditions) == 1 else {"$and": conditions}
    _check(runs, "", 0, COMPILED_OPERATORS, 4 * MAX_DEPTH + 8, [0])  # defence in depth: never fails
    logger.debug("query %r compiled to %r with metric conditions %r", text, runs, metrics)
    return Query(runs, metrics)


def _check(value: Any, path: str, depth: int, allowed: frozenset[str], max_depth: int, count: list[int]) -> Any:
    """A copy of ``value`` after checking it (operators in ``allowed``, safe value types, bounded size)."""
    count[0] += 1
    if count[0] > MAX_NODES:
        raise QueryError(f"filter too large (more than {MAX_NODES} values)", path=path)
    if depth > max_depth:
        raise QueryError(f"filter nested too deeply (more than {max_depth} levels)", path=path)
    if isinstance(value, Code):
        raise QueryError("server-side JavaScript (bson.code.Code) is not allowed in a filter", path=path)
    if getattr(value, "_type_marker", None) not in (None, *_SAFE_MARKERS):
        raise QueryError(f"values of type {type(value).__name__} are not allowed in a filter", path=path)
    if isinstance(value, dict):
        copy = {}
        for key, item in value.items():
            if type(key) is not str:
                raise QueryError(f"field names must be strings, not {type(key).__name__}", path=path)
            where = f"{path}.{key}" if path else key
            if "\x00" in key:
                raise QueryError("field names may not contain NUL characters", path=where)
            if key.startswith("$") and key not in allowed:
                raise QueryError(f"operator {key!r} is not allowed in a filter (allowed: {', '.join(sorted(allowed))})",
                                 path=where)
            if not key.startswith("$") and any(part.startswith("$") for part in key.split(".")):
                raise QueryError(f"field name {key!r} has a part starting with '$'", path=where)
            if key in ("$and", "$or", "$nor") and (not isinstance(item, (list, tuple)) or not item
                                                    or not all(isinstance(x, dict) for x in item)):
                raise QueryError(f"{key} needs a non-empty list of documents", path=where)
            copy[key] = _check(item, where, depth + 1, allowed, max_depth, count)
        return copy
    if isinstance(value, (list, tuple)):
        items = [_check(item, f"{path}[{i}]", depth + 1, allowed, max_depth, count) for i, item in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    if not isinstance(value, _SCALARS):
        raise QueryError(f"values of type {type(value).__name__} are not allowed in a filter", path=path)
    return value


def check_filter(document: dict) -> dict:
    """Validate a MongoDB filter document against the operator whitelist; returns a checked copy."""
    if not isinstance(document, dict):
        raise QueryError(f"a filter must be a document (dict), not {type(document).__name__}", path="")
    return _check(document, "", 0, FILTER_OPERATORS, MAX_DEPTH, [0])


def compile_filter(filter: str | dict | None, *, now: datetime.datetime | None = None,
                   dead_after: float = schema.DEAD_AFTER) -> Query:
    """``None`` or blank text: every run; text: :func:`parse`; a document: :func:`check_filter`."""
    if filter is None or (isinstance(filter, str) and not filter.strip()):
        return Query({})
    if isinstance(filter, str):
        return parse(filter, now=now, dead_after=dead_after)
    if isinstance(filter, dict):
        return Query(check_filter(filter))
    raise QueryError(f"a filter must be text, a document (dict) or None, not {type(filter).__name__}")
