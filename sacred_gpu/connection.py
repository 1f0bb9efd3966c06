"""Opening MongoDB: database specs as Sacred and Omniboard write them, and clients of any pymongo-compatible kind."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DEFAULT_DB = "sacred"
#: How long a new client waits for a server before a call fails, in ms (pymongo's own default is 30 000).
DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 5000
#: Bounds on every network wait of a client that writes (observer, sync), in ms: connecting, and each socket read
#: (a server that accepts a connection and never answers fails the call after ``socketTimeoutMS``).
WRITE_TIMEOUTS = {"connectTimeoutMS": 5000, "socketTimeoutMS": 20000}

_DB_NAME = r"[_A-Za-z][0-9A-Za-z#%&'()+\-;=@\[\]^_{}]{0,63}"
_HOST = r"[0-9A-Za-z](?:[0-9A-Za-z\-]{0,61}[0-9A-Za-z])?(?:\.[0-9A-Za-z](?:[0-9A-Za-z\-]{0,61}[0-9A-Za-z])?)*"
_SPEC = re.compile(
    rf"^(?:(?P<host>{_HOST}):(?P<port>\d{{1,5}})(?::(?P<db1>{_DB_NAME}))?|(?P<db2>{_DB_NAME}))"
    rf"(?:!(?P<priority>-?\d+))?$"
)


@dataclass(frozen=True)
class MongoSpec:
    """Where to write: a MongoDB URL (``None``: pymongo's default, localhost:27017), a database, a priority."""

    url: str | None
    db_name: str = DEFAULT_DB
    priority: int | None = None


def parse_mongo_spec(spec: str) -> MongoSpec:
    """Parse ``[host:port:]db_name[!priority]``, ``host:port`` (Sacred's ``-m``, Omniboard's ``-m``) or a URI.

    A ``mongodb://`` or ``mongodb+srv://`` URI names the database in its path (``sacred`` if it has none).
    Raises ``ValueError`` with the accepted forms when the spec matches none of them.
    """
    spec = spec.strip()
    if spec.startswith(("mongodb://", "mongodb+srv://")):
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(spec)
        if not parts.netloc:
            raise ValueError(f"invalid MongoDB URI {spec!r}: it names no host")
        database = unquote(parts.path.lstrip("/"))
        return MongoSpec(url=spec, db_name=database or DEFAULT_DB)
    match = _SPEC.match(spec)
    if match is None:
        raise ValueError(
            f"invalid database spec {spec!r}: expected 'db_name', 'host:port', 'host:port:db_name' "
            "(each optionally followed by '!priority') or a 'mongodb://' URI"
        )
    url = f"{match['host']}:{match['port']}" if match["host"] else None
    db_name = match["db1"] or match["db2"] or DEFAULT_DB
    priority = int(match["priority"]) if match["priority"] is not None else None
    return MongoSpec(url=url, db_name=db_name, priority=priority)


def is_mongomock(client: Any) -> bool:
    """True for a ``mongomock`` client, database or collection."""
    return client.__class__.__module__.split(".")[0] == "mongomock"  # __class__: wrappers may stand in


def open_client(url: str | None = None, client: Any = None, **client_kwargs: Any) -> Any:
    """Return ``client`` if given (pymongo or mongomock), else a new ``pymongo.MongoClient`` for ``url``.

    Creating a pymongo client does not connect; the first operation does, failing after
    ``serverSelectionTimeoutMS`` (default here: 5 s).
    """
    if client is not None:
        if url is not None:
            raise ValueError("pass either url= or client=, not both")
        if not callable(getattr(client, "get_database", None)):
            raise TypeError(f"client must be a pymongo-compatible MongoClient, got {type(client).__name__}")
        enable_gridfs(client)
        return client
    import pymongo

    client_kwargs.setdefault("serverSelectionTimeoutMS", DEFAULT_SERVER_SELECTION_TIMEOUT_MS)
    client = pymongo.MongoClient(url, **client_kwargs)
    enable_gridfs(client)  # pymongo.MongoClient may be mongomock's under mongomock.patch()
    return client


def database(client: Any, db_name: str, write_concern: dict[str, Any] | None = None) -> Any:
    """``client[db_name]``, with ``write_concern`` (pymongo ``WriteConcern`` arguments) for its writes if given.

    Raises ``ValueError`` for unacknowledged writes (``w=0``): the journal forgets a record only once MongoDB has
    acknowledged it.
    """
    if not write_concern:
        return client[db_name]
    from pymongo.write_concern import WriteConcern

    concern = WriteConcern(**write_concern)
    if not concern.acknowledged:
        raise ValueError("write_concern w=0 is not allowed: sacred-gpu keeps a record until MongoDB acknowledges it")
    return client.get_database(db_name, write_concern=concern)


def without_password(url: str | None) -> str | None:
    """``url`` with the password of its user info removed (``mongodb://user:pw@host`` -> ``mongodb://user@host``)."""
    if url is None:
        return None
    return re.sub(r"^([a-z+]+://[^:@/]*):[^@/]*@", r"\1@", url)


def with_password(url: str | None, password: str | None) -> str | None:
    """``url`` with ``password`` put back into its user info, if it names a user without one."""
    if not url or not password:
        return url
    from urllib.parse import quote_plus

    return re.sub(r"^([a-z+]+://[^:@/]+)@", lambda m: f"{m.group(1)}:{quote_plus(password)}@", url)


def enable_gridfs(client: Any) -> None:
    """Let ``gridfs`` work on mongomock objects (no-op for real clients)."""
    if is_mongomock(client):
        import mongomock.gridfs

        mongomock.gridfs.enable_gridfs_integration()


def describe(url: str | None, db_name: str) -> str:
    """A human-readable name of a database for messages (credentials removed)."""
    where = url or "localhost:27017"
    where = re.sub(r"//[^@/]*@", "//", where)
    return f"{where} (database {db_name!r})"


def short_error(exc: BaseException, limit: int = 160) -> str:
    """An error in one line (its class, the server's code, its message): pymongo's server-selection errors carry a
    whole topology description, left out here."""
    text = str(exc).split(" (configured timeouts")[0].split(", Timeout:")[0].strip()
    code = getattr(exc, "code", None)
    head = type(exc).__name__ + (f" (code {code})" if isinstance(code, int) else "")
    text = f"{head}: {text}" if text else head
    return text if len(text) <= limit else text[: limit - 3] + "..."
