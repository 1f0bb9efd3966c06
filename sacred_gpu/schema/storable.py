"""Keys and values made storable: nothing a user can log makes a record BSON or MongoDB refuses.

- :func:`bson_safe`, :func:`flatten`, :func:`metric_value`: what Sacred does to config, info, result and logged
  scalars, plus what Sacred misses (NUL in keys, lone surrogates, nesting deeper than MongoDB takes, integers past
  int64). Keys keep their ``.`` and ``$`` as the stock observer sends them; :func:`sacred_keys` (Sacred's
  :func:`bson_key` form, without its collisions) is for a server that refuses them.
- :func:`rollup_key` / :func:`rollup_name`: an unambiguous field name for each metric in ``metric_rollups``.

Imports only ``bson`` (and Sacred, lazily, in :func:`flatten`): the observer's hot path uses it.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections import Counter
from collections.abc import Collection, Mapping
from typing import Any

from bson import ObjectId
from bson.int64 import Int64

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_BSON_ATOMS = (str, bool, float, type(None), _dt.datetime, ObjectId, bytes, Int64)

#: What a NUL character (``\x00``) in a key becomes: U+2400 SYMBOL FOR NUL (``␀``), visible wherever the key is
#: shown. BSON keys are NUL-terminated, so a NUL cannot be stored in one (values may hold it).
NUL_REPLACEMENT = "\u2400"

#: Levels of nesting kept below a stored field; deeper values are stored as their ``str``. MongoDB refuses
#: documents nested more than 100 levels (the run document and the field's own path take a few).
MAX_DEPTH = 90


def _utf8(text: str) -> str:
    """``text``, with lone surrogates (from ``surrogateescape``-decoded file names) written as ``\\udcff``:
    BSON strings are UTF-8, which cannot hold them."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def bson_key(key: Any) -> str:
    """A key MongoDB accepts, as Sacred's ``force_valid_bson_key`` makes it (``.`` -> ``,``, leading ``$`` ->
    ``@``), and with NUL -> :data:`NUL_REPLACEMENT` and lone surrogates escaped, which Sacred misses. Never raises."""
    try:
        key = _utf8(str(key))
    except Exception:  # noqa: BLE001 - a key whose __str__ fails
        key = f"<unprintable {type(key).__name__}>"
    if key.startswith("$"):
        key = "@" + key[1:]
    return key.replace(".", ",").replace("\x00", NUL_REPLACEMENT)


def storable_key(key: Any) -> str:
    """``key`` as a ``str`` BSON can hold: NUL -> :data:`NUL_REPLACEMENT`, lone surrogates escaped; ``.`` and ``$``
    are kept (MongoDB 5.0 and later store them; :func:`sacred_keys` rewrites them for a server that refuses them).
    Never raises."""
    try:
        key = _utf8(str(key))
    except Exception:  # noqa: BLE001 - a key whose __str__ fails
        key = f"<unprintable {type(key).__name__}>"
    return key.replace("\x00", NUL_REPLACEMENT)


def sacred_keys(obj: Any) -> Any:
    """``obj`` with every key in Sacred's storable form (:func:`bson_key`: ``.`` -> ``,``, leading ``$`` -> ``@``),
    for a server that refuses ``.`` and ``$`` in field names. Where that form would make two keys of one document
    the same (``x.y`` beside ``x,y``), the rewritten one is percent-encoded instead (``x%2Ey``): no value is lost."""
    if isinstance(obj, list):
        return [sacred_keys(item) for item in obj]
    if not isinstance(obj, dict):
        return obj
    wanted = {key: bson_key(key) for key in obj}
    taken = Counter(wanted.values())
    out = {}
    for key, value in obj.items():
        form = wanted[key]
        if form != key and taken[form] > 1:
            form = rollup_key(key)
        out[form] = sacred_keys(value)
    return out


def bson_safe(obj: Any, _depth: int = 0) -> Any:
    """Return ``obj`` with every key made storable (:func:`storable_key`) and every value BSON cannot hold turned
    into ``str``.

    Used for fields Sacred stores as they come (experiment, host, meta, artifact metadata). Numpy scalars
    become Python numbers, tuples and sets become lists; containers nested deeper than :data:`MAX_DEPTH` (cycles
    included) become their ``str``. Never raises.
    """
    if isinstance(obj, str):
        return _utf8(obj)
    if isinstance(obj, (dict, list, tuple, set, frozenset)) and _depth >= MAX_DEPTH:
        return _text(obj)
    if isinstance(obj, dict):
        return {storable_key(k): bson_safe(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [bson_safe(v, _depth + 1) for v in obj]
    if isinstance(obj, int) and not isinstance(obj, bool):
        return obj if _INT64_MIN <= obj <= _INT64_MAX else str(obj)
    if isinstance(obj, _BSON_ATOMS):
        return obj
    item = getattr(obj, "item", None)  # numpy scalars and 0-d arrays
    if callable(item) and getattr(obj, "ndim", 1) == 0:
        try:
            return bson_safe(item(), _depth)
        except Exception:  # noqa: BLE001 - any failure falls back to str, as Sacred does
            pass
    return _text(obj)


def _text(obj: Any) -> str:
    """``str(obj)`` made storable, or a placeholder when ``str`` fails."""
    try:
        return _utf8(str(obj))
    except Exception:  # noqa: BLE001 - includes RecursionError on very deep structures
        return f"<unprintable {type(obj).__name__}>"


def flatten(obj: Any) -> Any:
    """Sacred's ``flatten`` (jsonpickle: numpy arrays, tuples, int keys encoded) followed by :func:`bson_safe`.

    Used for ``config``, ``info`` and ``result``, which Sacred flattens before storing. Never raises.
    """
    from sacred.serializer import flatten as sacred_flatten

    try:
        flat = sacred_flatten(obj)
    except Exception:  # noqa: BLE001 - jsonpickle can fail on exotic objects; keep the run going
        flat = obj
    return bson_safe(flat)


def decoded(value: Any) -> Any:
    """A stored value as a reader wants it: numpy scalars and arrays Sacred's ``flatten`` (jsonpickle) stored as
    ``{"py/object": "numpy.float64", "value": 0.8}`` and ``{"py/object": "numpy.ndarray", "values": [...]}`` become
    the number and the list, ``{"py/tuple": [...]}`` a list; other values stay as they are."""
    if isinstance(value, list):
        return [decoded(item) for item in value]
    if not isinstance(value, dict):
        return value
    kind = value.get("py/object")
    if isinstance(kind, str) and kind.startswith("numpy."):
        if "value" in value:
            return value["value"]
        if "values" in value:
            return decoded(value["values"])
    if list(value) == ["py/tuple"] and isinstance(value["py/tuple"], list):
        return decoded(value["py/tuple"])
    return {key: decoded(item) for key, item in value.items()}


def metric_value(value: Any) -> int | float | None:
    """A logged scalar as a BSON number (numpy/torch scalars included), or ``None`` if it is not a number."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX:
        return value
    if isinstance(value, float):
        return value
    try:
        return float(value)  # ints past int64 too; OverflowError past a float's range
    except Exception:  # noqa: BLE001 - anything that is not a number, however it fails
        return None


# --------------------------------------------------------------------------------------------------------------
# Field names of metric_rollups: one per metric name, unambiguous.
# --------------------------------------------------------------------------------------------------------------

#: Characters of a metric name :func:`rollup_key` percent-encodes (as the hex of their UTF-8 bytes), anywhere in the
#: name: ``%`` (so every ``%`` of a key starts an escape), ``.`` (a path separator to MongoDB), NUL (BSON keys cannot
#: hold it), and lone surrogates (UTF-8 cannot). A leading ``$`` is encoded too (``%24``).
_ESCAPED = re.compile("[%.\x00\ud800-\udfff]")
_ESCAPES = re.compile("(?:%[0-9A-F]{2})+")
#: The key of the empty metric name (an empty field name cannot be addressed by a dotted path); no other name maps to
#: it, as every other ``%`` of a key is followed by two hex digits.
_EMPTY_KEY = "%"


def _escape(match: re.Match[str]) -> str:
    return "".join(f"%{byte:02X}" for byte in match.group().encode("utf-8", "surrogatepass"))


def rollup_key(name: Any) -> str:
    """The field of ``metric_rollups`` holding metric ``name``'s roll-ups: ``name`` with ``%`` -> ``%25``,
    ``.`` -> ``%2E``, NUL -> ``%00``, a leading ``$`` -> ``%24`` (and lone surrogates percent-encoded); every other
    name is its own key. Injective: :func:`rollup_name` inverts it. Never raises (non-``str`` names: their ``str``).
    """
    if not isinstance(name, str):
        name = _text(name)
    if not name:
        return _EMPTY_KEY
    key = _ESCAPED.sub(_escape, name)
    return "%24" + key[1:] if key.startswith("$") else key


def rollup_name(key: str) -> str:
    """The metric name :func:`rollup_key` made ``key`` from. Raises ``ValueError`` for a key it cannot have made
    (roll-ups stored under the older :func:`bson_key` form, such as ``50%``)."""
    if not isinstance(key, str):
        raise ValueError(f"not a roll-up key: {key!r}")
    if key == _EMPTY_KEY:
        return ""
    try:
        name = _ESCAPES.sub(lambda m: bytes.fromhex(m.group().replace("%", "")).decode("utf-8", "surrogatepass"), key)
    except UnicodeDecodeError as error:
        raise ValueError(f"not a roll-up key: {key!r}") from error
    if rollup_key(name) != key:
        raise ValueError(f"not a roll-up key: {key!r}")
    return name


def legacy_rollup_key(name: str) -> str | None:
    """Where runs recorded before :func:`rollup_key` keep metric ``name``'s roll-ups (its :func:`bson_key`), or
    ``None`` when that is :func:`rollup_key`'s own key. Such a key is shared by several names (``val.loss`` and
    ``val,loss``); :func:`legacy_owner` says which metric a newer run keeps under it."""
    legacy = bson_key(name)
    return None if legacy == rollup_key(name) else legacy


def legacy_owner(legacy: str) -> str | None:
    """The metric a run recorded with :func:`rollup_key` keeps under field ``legacy``, or ``None`` if none can."""
    try:
        return rollup_name(legacy)
    except ValueError:
        return None


def find_rollup(rollups: Any, name: str, names: Collection[str] | None = None) -> Any:
    """Metric ``name``'s roll-ups in a run's ``metric_rollups`` (a dict), or ``None``.

    Read under :func:`rollup_key`; for runs recorded before it (no such field), under the old :func:`bson_key`
    form, unless ``names`` (the run's metric names, from ``info.metrics``) show the run is a newer one: it lacks
    ``name``, or it has the metric that owns that field now (``val,loss`` for ``val.loss``). ``names=None``: not
    checked. Never raises.
    """
    if not isinstance(rollups, Mapping):
        return None
    key = rollup_key(name)
    if key in rollups:
        return rollups[key]
    legacy = legacy_rollup_key(name)
    if legacy is None or legacy not in rollups:
        return None
    if names is not None and (name not in names or legacy_owner(legacy) in names):
        return None
    return rollups[legacy]
