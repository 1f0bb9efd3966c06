"""Where journals live and how their files are made: the spool directory, private folders and files (the journal
may hold a URL with a user name, and the run's data), files replaced atomically."""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

#: Environment variable naming the spool directory.
SPOOL_ENV = "SACRED_GPU_SPOOL"
#: Permissions of what the journal creates: it may hold a URL with a user name, and the run's data.
FOLDER_MODE, FILE_MODE = 0o700, 0o600
#: Folder of a spool holding the quarantines of its journals (:mod:`sacred_gpu.record.quarantine`).
QUARANTINE = "quarantine"


def data_dir() -> Path:
    """sacred-gpu's folder in the user's data directory: ``$XDG_DATA_HOME/sacred-gpu`` (``~/.local/share``)."""
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return (Path(data_home) / "sacred-gpu").absolute()


def default_spool() -> Path:
    """``$SACRED_GPU_SPOOL``, else the user's data directory (``$XDG_DATA_HOME/sacred-gpu/spool``), absolute."""
    if os.environ.get(SPOOL_ENV):
        return Path(os.environ[SPOOL_ENV]).expanduser().absolute()
    return data_dir() / "spool"


def make_private_folder(path: Path) -> Path:
    """Create ``path`` (and its parents) if missing; a folder we create is readable by its owner only."""
    path.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
    return path


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``; raises ``OSError`` on a failed or short write."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError("short write")
        view = view[written:]


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` at once (a unique temp file, fsynced, renamed over it), owner-only."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def private_fallback() -> Path:
    """The fallback spool in the temp dir: ``sacred-gpu-spool-<uid>`` if it is ours alone (owner, mode 0700, not a
    link), else a new folder of our own with a random name (another user may have made the predictable one)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = Path(tempfile.gettempdir()) / f"sacred-gpu-spool-{uid}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if stat.S_ISDIR(info.st_mode) and info.st_uid == uid and not info.st_mode & 0o077:
        return path
    logger.warning("sacred-gpu: %s is not private to this user (owner uid %d, mode %o): not used", path,
                   info.st_uid, stat.S_IMODE(info.st_mode))
    return Path(tempfile.mkdtemp(prefix=f"sacred-gpu-spool-{uid}-"))
