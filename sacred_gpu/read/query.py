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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bson.code import Code
from bson.objectid import ObjectId
from bson.regex import Regex

from sacred_gpu import schema
from sacred_gpu.read.errors import BadQuery

logger = logging.getLogger(__name__)

MAX_LENGTH = 10_000  #: characters in a text query
MAX_DEPTH = 50  #: nesting: parentheses and ``not`` in text, documents and lists in dict filters
MAX_NODES = 100_000  #: values in a dict filter
#: Roll-ups a filter can test (the ``_step`` ones are columns and sorts only: Sacred's runs have no stored steps).
ROLLUPS = tuple(rollup for rollup in schema.ROLLUPS if not rollup.endswith("_step"))
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
#: Fields shown in the runs table from a fallback: ``notes`` shows Omniboard's notes, else Sacred's ``--comment``.
SHOWN_FROM = {"omniboard.notes": "meta.comment"}
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
    """A compiled filter: ``runs`` on the runs collection, AND every one of ``metrics``; ``fields``: the comparisons of
    a text query, ``(path, operator, value)``, so that a filter matching nothing can say which field is unknown."""

    runs: dict
    metrics: tuple[MetricCondition, ...] = ()
    fields: tuple[tuple[str, str, Any], ...] = ()


def _excerpt(text: str, position: int, width: int = 40) -> str:
    """The text around ``position`` (control characters blanked) and a caret line under it."""
    start, end = max(0, position - width), min(len(text), position + width)
    prefix, suffix = ("..." if start else ""), ("..." if end < len(text) else "")
    shown = "".join(c if c.isprintable() else " " for c in text[start:end])
    return f"  {prefix}{shown}{suffix}\n  {' ' * (len(prefix) + position - start)}^"


def _parse_time(value: str) -> datetime.datetime | None:
    """``2026-01-02`` or ``2026-01-02T10:00:00`` (an offset or ``Z`` is converted) as a naive UTC datetime."""
    if not _DATE.fullmatch(value):
        return None
    try:
        moment = datetime.datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        return None
    return moment.astimezone(datetime.timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def _status_name(value: Any) -> Any:
    """A status as stored, whatever its case (``completed`` is COMPLETED); another value as it is."""
    name = value.upper() if isinstance(value, str) else value
    return name if name in (*schema.STATUSES, schema.PROBABLY_DEAD) else value


def as_shown(path: str, op: str, comparison: Callable[[str, str], dict]) -> dict:
    """The filter of a comparison (``comparison(path, operator)`` builds it as written) on the value the runs table
    shows: ``notes`` falls back to Sacred's comment; a ``result`` Sacred stored as a jsonpickle'd numpy scalar
    (``{"py/object": "numpy.float64", "value": 0.8}``) compares by its value."""
    found = comparison(path, op)
    fallback = SHOWN_FROM.get(path)
    if fallback is not None:
        return {"$or": [found, {"$and": [{path: {"$exists": False}}, comparison(fallback, op)]}]}
    if path == "result" and op in ("$eq", "$lt", "$lte", "$gt", "$gte", "$in", "$ne", "$nin"):
        positive = {"$ne": "$eq", "$nin": "$in"}.get(op, op)
        plain = comparison(path, positive)
        numpy = {"$and": [{"result.py/object": {"$regex": "^numpy\\."}}, {"result.value": plain["result"]}]}
        either = {"$or": [plain, numpy]}
        return either if positive == op else {"$nor": [either]}
    return found


def status_filter(op: str, names: list[Any], now: datetime.datetime, dead_after: float) -> dict:
    """A status comparison (``$eq``, ``$ne``, ``$in``, ``$nin`` with status ``names``) as the runs table shows
    statuses: RUNNING means alive, PROBABLY_DEAD a RUNNING run past the dead rule (:func:`schema.probably_dead_filter`,
    the same rule the table's status column follows)."""
    if not {schema.RUNNING, schema.PROBABLY_DEAD} & set(names):
        if op in ("$in", "$nin"):
            return {"status": {op: names}}
        return {"status": names[0]} if op == "$eq" else {"status": {"$ne": names[0]}}
    dead = schema.probably_dead_filter(now, dead_after)
    alive = {"$and": [{"status": schema.RUNNING}, {"$nor": [dead]}]}
    conditions = [dead if name == schema.PROBABLY_DEAD else alive if name == schema.RUNNING else {"status": name}
                  for name in names]
    match = conditions[0] if len(conditions) == 1 else {"$or": conditions}
    return match if op in ("$eq", "$in") else {"$nor": [match]}


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
    from sacred_gpu.read.query_parser import Parser  # the parser needs this module's vocabulary

    parser = Parser(text, now, dead_after)
    node = parser.parse()
    chain = node[1] if node[0] == "and" else [node]
    metrics = tuple(child[1] for child in chain if child[0] == "metric")
    conditions = [_to_filter(child, text) for child in chain if child[0] != "metric"]
    runs = {} if not conditions else conditions[0] if len(conditions) == 1 else {"$and": conditions}
    _check(runs, "", 0, COMPILED_OPERATORS, 4 * MAX_DEPTH + 8, [0])  # defence in depth: never fails
    logger.debug("query %r compiled to %r with metric conditions %r", text, runs, metrics)
    return Query(runs, metrics, tuple(parser.fields))


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
            if key == "$regex":
                _check_regex(item, where)
            copy[key] = _check(item, where, depth + 1, allowed, max_depth, count)
        return copy
    if isinstance(value, (list, tuple)):
        items = [_check(item, f"{path}[{i}]", depth + 1, allowed, max_depth, count) for i, item in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    if not isinstance(value, _SCALARS):
        raise QueryError(f"values of type {type(value).__name__} are not allowed in a filter", path=path)
    return value


def _check_regex(value: Any, path: str) -> None:
    """Refuse a ``$regex`` that is too long or can backtrack catastrophically (:mod:`.regex_check`)."""
    from sacred_gpu.read import regex_check

    pattern = value if isinstance(value, str) else getattr(value, "pattern", None)
    refused = regex_check.problem(pattern) if isinstance(pattern, str) else None
    if refused:
        raise QueryError(refused, path=path)


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
