"""Regular expressions checked before MongoDB runs them: a pattern whose matching can take exponential time
(catastrophic backtracking: a repeat inside a repeat, ``(a+)+`` or ``(.*.*)*``) or that is too long is refused with
its cause, so one filter cannot hold the server."""

from __future__ import annotations

import re
from typing import Any

try:  # Python >= 3.11
    import re._parser as sre_parse  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse  # type: ignore[no-redef]

MAX_PATTERN = 200  #: characters in a regular expression of a filter
MAX_UNBOUNDED = 6  #: unbounded repeats (``*``, ``+``, ``{n,}``) in one pattern: each multiplies the backtracking
_REPEATS = {sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, getattr(sre_parse, "POSSESSIVE_REPEAT", None)} - {None}
_LARGE = 10  #: a repeat allowing more than this many copies counts as one that backtracks


def problem(pattern: str) -> str | None:
    """Why ``pattern`` may not run (too long, invalid, or catastrophic backtracking), or None."""
    if len(pattern) > MAX_PATTERN:
        return f"regular expression too long: {len(pattern)} characters (the limit is {MAX_PATTERN})"
    try:
        parsed = sre_parse.parse(pattern)
    except re.error as exc:
        return f"invalid regular expression {pattern!r}: {exc.msg}"
    unbounded = [0]
    nested = _nested_repeat(parsed, False, unbounded)
    if nested:
        return (f"regular expression {pattern!r} has {nested}: matching it can take exponential time "
                f"(catastrophic backtracking); write it without a quantifier inside a repeated group")
    if unbounded[0] > MAX_UNBOUNDED:
        return (f"regular expression {pattern!r} has {unbounded[0]} unbounded repeats (the limit is "
                f"{MAX_UNBOUNDED}): matching it can take very long")
    return None


def _nested_repeat(items: Any, inside: bool, unbounded: list[int]) -> str | None:
    """The first repeat found inside another repeat (as text, e.g. ``'*' inside '*'``), counting unbounded ones."""
    for op, argument in items:
        if op in _REPEATS:
            _low, high, body = argument
            repeats = high is sre_parse.MAXREPEAT or high > _LARGE
            if high is sre_parse.MAXREPEAT:
                unbounded[0] += 1
            if repeats and inside:
                return "a quantifier inside a repeated group"
            found = _nested_repeat(body, inside or repeats, unbounded)
            if found:
                return found
        elif op is sre_parse.SUBPATTERN:
            found = _nested_repeat(argument[-1], inside, unbounded)
            if found:
                return found
        elif op is sre_parse.BRANCH:
            for branch in argument[1]:
                found = _nested_repeat(branch, inside, unbounded)
                if found:
                    return found
        elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
            found = _nested_repeat(argument[1], inside, unbounded)
            if found:
                return found
    return None
