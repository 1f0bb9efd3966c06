"""The copies a journal keeps of the files its run hands over (artifacts, resources, sources), in its ``files``
folder, until MongoDB has them: a file may be gone or changed by the time it is uploaded."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from sacred_gpu.record.spool import FILE_MODE, write_all


class SpooledFiles:
    """The ``files`` folder of a journal (a part of :class:`~sacred_gpu.record.journal.Journal`)."""

    files: Path
    #: Whether what was uploaded may be deleted here (segments, copies); a followed folder is another machine's.
    owned = True

    def spool_file(self, source: str | os.PathLike[str]) -> str:
        """Copy a file into the journal (it may be gone when the upload happens); returns the copy's name."""
        name = f"{uuid.uuid4().hex}{Path(source).suffix}"
        with open(source, "rb") as src, os.fdopen(
                os.open(self.files / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "wb") as dst:
            try:
                shutil.copyfileobj(src, dst, 1 << 20)
            except OSError:
                dst.close()
                (self.files / name).unlink(missing_ok=True)
                raise
        return name

    def spool_bytes(self, data: bytes, suffix: str = ".txt") -> str:
        """Keep bytes for upload as a file; returns its spooled name."""
        name = f"{uuid.uuid4().hex}{suffix}"
        fd = os.open(self.files / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            write_all(fd, data)
        except OSError:
            os.close(fd)
            (self.files / name).unlink(missing_ok=True)
            raise
        os.close(fd)
        return name

    def spool_text(self, text: str, suffix: str = ".txt") -> str:
        """Keep a text for upload as a file; returns its spooled name."""
        return self.spool_bytes(text.encode("utf-8"), suffix)

    def discard_copy(self, name: str) -> None:
        """Remove the spooled copy ``name`` once MongoDB has it (where it is :attr:`owned`)."""
        if self.owned:
            (self.files / name).unlink(missing_ok=True)
