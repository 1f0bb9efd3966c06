"""Regular expressions refused before they run (``read/regex_check.py``): catastrophic backtracking, length,
unbounded repeats; in the query language and in dict filters."""

from __future__ import annotations

import pytest

from sacred_gpu.read.query import QueryError, check_filter, parse


@pytest.mark.parametrize("pattern", ["(.*.*)*#", "(a+)+$", "(a*)*b", "((ab)*c)+", "(x{1,50})*", "(?:a|b+)+"])
def test_catastrophic_regexes_are_refused_before_they_run(pattern: str) -> None:
    """Issue 15, item 11: a repeat inside a repeat backtracks exponentially; the error names the cause."""
    with pytest.raises(QueryError, match="quantifier inside a repeated group.*catastrophic backtracking") as raised:
        parse(f"experiment matches {pattern!r}")
    assert raised.value.position == len("experiment matches ")
    with pytest.raises(QueryError, match="catastrophic backtracking") as raised:
        check_filter({"experiment.name": {"$regex": pattern}})
    assert raised.value.path == "experiment.name.$regex"


def test_long_regexes_and_many_unbounded_repeats_are_refused_and_safe_ones_pass() -> None:
    with pytest.raises(QueryError, match="regular expression too long: 201 characters"):
        parse(f"experiment matches '{'a' * 201}'")
    with pytest.raises(QueryError, match="7 unbounded repeats"):
        parse("experiment matches 'a.*b.*c.*d.*e.*f.*g.*h'")
    for safe in ("^mnist", "(ab)*c", r"\d+\.\d{2}", "(a{2})*x", "a.*b.*c", "(?i)^resnet-(18|50)$"):
        assert parse(f"experiment matches {safe!r}").runs == {"experiment.name": {"$regex": safe}}
