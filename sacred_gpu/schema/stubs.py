"""Values too large for a run document: moved to GridFS files, a small stub dict left in their place and read back
transparently (:func:`stub_large_values`, :func:`resolve_stubs`)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import bson
from bson import ObjectId
from bson.int64 import Int64

from sacred_gpu.schema.storable import MAX_DEPTH

logger = logging.getLogger(__name__)

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
