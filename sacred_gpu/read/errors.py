"""The read side's errors: what a reader (a notebook, sacred-board) is told when a read fails, in its own words.

Every public method of :class:`~sacred_gpu.read.store.RunStore` raises these and nothing of pymongo's or gridfs's
(:func:`translated`); the original error is chained (``raise ... from``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from sacred_gpu import connection, errors


class ReadError(Exception):
    """A read or an edit of the database failed; the message says why."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class Unavailable(ReadError):
    """MongoDB cannot be reached or did not answer in time (try again later)."""


class Refused(ReadError):
    """MongoDB answered with an error (permissions, an operation the server does not support, ...)."""


class NotFound(ReadError, KeyError):
    """No such run, file or value in the database (a ``KeyError`` too)."""


class BadQuery(ReadError, ValueError):
    """A filter, sort, column or roll-up that cannot be read (a ``ValueError`` too)."""


def translate(exc: BaseException) -> ReadError | None:
    """The read error ``exc`` (raised by pymongo or gridfs) means, or ``None`` for errors of other kinds."""
    from gridfs.errors import NoFile
    from pymongo.errors import PyMongoError

    if isinstance(exc, NoFile):
        return NotFound(f"the file is missing from GridFS ({exc})")
    if isinstance(exc, PyMongoError):
        text = connection.short_error(exc)
        if errors.classify(exc) is errors.TRANSIENT:
            return Unavailable(f"MongoDB unreachable: {text}")
        return Refused(f"MongoDB refused the request: {text}")
    return None


C = TypeVar("C", bound=type)


def translated(cls: C) -> C:
    """Class decorator: each public method of ``cls`` (inherited ones included) raises :class:`ReadError` for the
    errors of pymongo and gridfs."""
    for name, member in inspect.getmembers(cls, inspect.isfunction):
        if not name.startswith("_"):
            setattr(cls, name, _translating(member))
    return cls


def _translating(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except ReadError:
            raise
        except Exception as exc:
            error = translate(exc)
            if error is None:
                raise
            raise error from exc

    return call
