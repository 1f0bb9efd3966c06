"""Keys and values made storable: nothing a user can log makes a record BSON or MongoDB refuses.

- :func:`bson_safe`, :func:`flatten`, :func:`metric_value`: what Sacred does to config, info, result and logged
  scalars, plus what Sacred misses (NUL in keys, lone surrogates, nesting deeper than MongoDB takes, integers past
  int64). Keys keep their ``.`` and ``$`` as the stock observer sends them; :func:`sacred_keys` (Sacred's
  :func:`bson_key` form, without its collisions) is for a server that refuses them.
- :func:`rollup_key` / :func:`rollup_name`: an unambiguous field name for each metric in ``metric_rollups``.
- :func:`stub_large_values` / :func:`resolve_stubs`: values that would take a run document past MongoDB's 16 MB
  limit are moved to GridFS files and left in the document as small stub dicts, read back transparently.

Imports only ``bson`` (and Sacred, lazily, in :func:`flatten`): the observer's hot path uses it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import re
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import bson
from bson import ObjectId
from bson.int64 import Int64

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------------------
# Keys and values, the way Sacred makes them storable.
# --------------------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------------------
# Values too large for a run document: moved to GridFS, a stub left in their place.
# --------------------------------------------------------------------------------------------------------------

#: MongoDB's limit on one document, in bytes (16 MiB).
MAX_DOCUMENT = 16 * 1024 * 1024
#: Default bytes of BSON :func:`stub_large_values` brings a document down to: 1 MiB under :data:`MAX_DOCUMENT`, left
#: for the fields of the run document that are not in the measured ``$set`` and for the update command around it.
STUB_BUDGET = 15 * 1024 * 1024
#: Smallest value, in bytes of BSON, that is moved out (64 KiB): smaller ones stay where readers expect them.
STUB_THRESHOLD = 64 * 1024
#: The marker field of a stub, and its value.
STUB_MARKER = "sacred_gpu_stub"
STUB_STORE = "gridfs"


@dataclass(frozen=True)
class LargeValue:
    """A value :func:`stub_large_values` took out of a document: to be stored as GridFS file ``file_id``.

    ``path``: where it was, dotted (``config.data.blob``, ``fail_trace.2``); ``data``: the BSON encoding of
    ``{"value": value}`` (so any BSON value round-trips), the file's whole content.
    """

    file_id: ObjectId
    path: str
    data: bytes


def is_stub(value: Any) -> bool:
    """Whether ``value`` is a stub :func:`stub_large_values` left in place of a value."""
    return (isinstance(value, Mapping) and value.get(STUB_MARKER) == STUB_STORE
            and isinstance(value.get("file_id"), ObjectId))


def stub_filename(runs_collection: str, run_id: Any, path: str) -> str:
    """GridFS filename of a moved value, like Sacred's ``artifact://runs/<id>/<name>``: ``stub://runs/<id>/<path>``."""
    return f"stub://{runs_collection}/{run_id}/{path}"


def stub_file_ids(value: Any) -> list[ObjectId]:
    """The GridFS files the stubs in ``value`` (a run document) point to: those to delete with the run."""
    found: list[ObjectId] = []

    def note(stub: Mapping[str, Any]) -> Mapping[str, Any]:
        found.append(stub["file_id"])
        return stub

    _walk_stubs(value, note)
    return found


@dataclass
class _Node:
    """A value of at least the threshold's size, found in the document: a candidate to move out."""

    keys: tuple[Any, ...]  # from the document's top level: field name (dots and all), then keys and list indexes
    size: int  # bytes of ``{"v": value}`` as it is now (stubs inside taken into account)
    parent: _Node | None
    children: int = 0  # candidates inside it still in place
    alive: bool = True


def _encoded_size(value: Any) -> int:
    """Bytes of ``{"v": value}`` in BSON; 0 for what BSON cannot encode."""
    try:
        return len(bson.encode({"v": value}))
    except Exception:  # noqa: BLE001 - not encodable: never moved
        return 0


#: Types of values far smaller than any threshold (numbers, dates, ids).
_SMALL_ATOMS = {int, float, bool, type(None), _dt.datetime, ObjectId, Int64}


def _maybe_large(value: Any, threshold: int) -> bool:
    """Whether ``value`` can reach ``threshold`` bytes, decided without encoding the small atoms."""
    if isinstance(value, str):
        return len(value) * 4 + 8 >= threshold  # UTF-8: 4 bytes a character at most
    if isinstance(value, bytes):
        return len(value) + 16 >= threshold
    return isinstance(value, (dict, list, tuple)) and bool(value) and not is_stub(value)


def _candidates(value: Any, keys: tuple[Any, ...], parent: _Node | None, threshold: int,
                found: list[_Node]) -> None:
    """Add the values in ``value`` (a container) of at least ``threshold`` bytes to ``found``, nested ones too."""
    if len(keys) > MAX_DEPTH + 10:
        return
    if isinstance(value, (list, tuple)):  # long lists of numbers or short strings: ruled out at C speed
        kinds = set(map(type, value))
        if kinds <= _SMALL_ATOMS or (kinds <= {str, bytes} and max(map(len, value)) * 4 + 16 < threshold):
            return
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if not _maybe_large(item, threshold):
            continue
        size = _encoded_size(item)
        if size < threshold:
            continue
        node = _Node(keys + (key,), size, parent)
        found.append(node)
        if parent is not None:
            parent.children += 1
        if isinstance(item, (dict, list, tuple)):
            _candidates(item, node.keys, node, threshold, found)


def _file_id(seed: Any, path: str, data: bytes) -> ObjectId:
    """A fresh id; with a ``seed``, one fixed by seed, path and content (the same value gets the same stub)."""
    if seed is None:
        return ObjectId()
    digest = hashlib.blake2b(digest_size=12)
    for part in (repr(seed).encode("utf-8", "backslashreplace"), path.encode("utf-8", "backslashreplace"), data):
        digest.update(len(part).to_bytes(8, "little") + part)
    return ObjectId(digest.digest())


def _replace(out: dict, keys: tuple[Any, ...], new: Any, copied: set[int]) -> None:
    """Set ``out`` at ``keys`` to ``new``, copying each container on the way once (the input is never changed)."""
    container: Any = out
    for key in keys[:-1]:
        child = container[key]
        if id(child) not in copied:
            child = dict(child) if isinstance(child, dict) else list(child)
            copied.add(id(child))
            container[key] = child
        container = child
    container[keys[-1]] = new


def stub_large_values(doc: dict, budget: int = STUB_BUDGET, *, threshold: int = STUB_THRESHOLD,
                      seed: Any = None) -> tuple[dict, list[LargeValue]]:
    """``doc`` (a run document, or the fields of a ``$set``, dotted names allowed) brought under ``budget`` bytes of
    BSON, and the values taken out of it.

    While the document is over ``budget``, the largest value of at least ``threshold`` bytes that holds no other
    such value (a string, bytes, or a list or dict of smaller items) is replaced by a stub, a plain dict Omniboard
    and Incense show as it is: ``{"sacred_gpu_stub": "gridfs", "file_id", "bytes": size of the file, "type":
    Python type name, "path": "config.data.blob"}``. Taking out a value that holds stubs puts them back in it first,
    so each value is in one file. ``_id`` is never taken out. ``seed`` (the run id): file ids are derived from
    seed, path and content, so the same value gives the same stub at every heartbeat (upload each id once); without
    it every call makes new ids.

    Returns the document (``doc`` itself when nothing was taken out; else a copy, ``doc`` unchanged) and a
    :class:`LargeValue` per stub. A document that cannot be brought under ``budget`` comes back as far as it could
    be; one BSON cannot encode comes back as it is. Never raises.
    """
    try:
        total = len(bson.encode(doc))
    except Exception:  # noqa: BLE001 - not a document BSON can encode: nothing to measure
        return doc, []
    if total <= budget:
        return doc, []
    try:
        return _stub(doc, total, budget, threshold, seed)
    except Exception:  # noqa: BLE001 - odd input found half-way: give it back as it is
        logger.warning("sacred-gpu: could not move large values out of a document", exc_info=True)
        return doc, []


def _stub(doc: dict, total: int, budget: int, threshold: int, seed: Any) -> tuple[dict, list[LargeValue]]:
    nodes: list[_Node] = []
    top = {key: value for key, value in doc.items() if key != "_id"}
    _candidates(top, (), None, threshold, nodes)
    out, copied, taken = dict(doc), set(), {}
    while total > budget:
        ready = [node for node in nodes if node.alive and node.children == 0]
        if not ready:
            break
        node = max(ready, key=lambda n: n.size)
        node.alive = False
        if node.parent is not None:
            node.parent.children -= 1
        value: Any = doc
        for key in node.keys:
            value = value[key]
        data = bson.encode({"value": value})
        path = ".".join(str(key) for key in node.keys)
        stub = {STUB_MARKER: STUB_STORE, "file_id": _file_id(seed, path, data), "bytes": len(data),
                "type": type(value).__name__, "path": path}
        saved = node.size - _encoded_size(stub)
        if saved <= 0:
            continue
        _replace(out, node.keys, stub, copied)
        taken = {keys: large for keys, large in taken.items() if keys[:len(node.keys)] != node.keys}
        taken[node.keys] = LargeValue(stub["file_id"], path, data)
        parent = node.parent
        while parent is not None:
            parent.size -= saved
            parent = parent.parent
        total -= saved
    return (out, list(taken.values())) if taken else (doc, [])


def load_stub(stub: Mapping[str, Any], read_file: Callable[[ObjectId], bytes]) -> Any:
    """The value a stub stands for, from its file's content (``read_file(file_id)``). Raises ``ValueError`` for what
    is not a stub and whatever ``read_file`` raises (the file may not be uploaded yet)."""
    if not is_stub(stub):
        raise ValueError("not a sacred-gpu stub")
    return bson.decode(read_file(stub["file_id"]))["value"]


def _walk_stubs(value: Any, visit: Callable[[Mapping[str, Any]], Any]) -> Any:
    """``value`` with every stub in it replaced by ``visit(stub)``; containers copied only where one changed."""
    if is_stub(value):
        return visit(value)
    if isinstance(value, dict):
        changed = {key: _walk_stubs(item, visit) for key, item in value.items()}
        return changed if any(changed[key] is not item for key, item in value.items()) else value
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        changed_list = [_walk_stubs(item, visit) for item in value]
        return changed_list if any(a is not b for a, b in zip(changed_list, value)) else value
    return value


def resolve_stubs(value: Any, read_file: Callable[[ObjectId], bytes]) -> Any:
    """``value`` (a run document or part of one) with every stub replaced by the value it stands for; a stub whose
    file cannot be read (deleted, or not uploaded yet) is left in place. ``value`` itself is never changed."""

    def load(stub: Mapping[str, Any]) -> Any:
        try:
            return resolve_stubs(load_stub(stub, read_file), read_file)
        except Exception:  # noqa: BLE001 - the stub stays: readers still see what was there and how large it was
            logger.debug("sacred-gpu: stub %s not loaded", stub.get("path"), exc_info=True)
            return stub

    return _walk_stubs(value, load)


def label_stubs(value: Any) -> Any:
    """``value`` with every stub in it replaced by its :func:`stub_label`, for display without reading files."""
    return _walk_stubs(value, stub_label)


def stub_label(stub: Mapping[str, Any]) -> str:
    """A short text for a stub where a table cell shows a value: ``[str, 20,000,022 bytes in GridFS]``."""
    size = stub.get("bytes")
    return f"[{stub.get('type', 'value')}, {size:,} bytes in GridFS]" if isinstance(size, int) else \
        "[value in GridFS]"
