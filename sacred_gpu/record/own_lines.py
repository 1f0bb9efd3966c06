"""Our log lines, kept out of the run's captured output.

Under ``--capture fd`` Sacred captures everything written to the process's stdout and stderr, so the lines our
``sacred_gpu`` loggers print through the user's logging handlers would be stored as the run's output. While a run
is recorded, :class:`OwnLines` listens on the ``sacred_gpu`` logger (it prints nothing) and remembers, for each of
our records, the exact text each of the user's handlers prints for it; :meth:`OwnLines.strip` takes those texts out
of the output before it is stored.

Only our text is removed, never a line around it: stdout and stderr reach Sacred's capture through two ``tee``
processes, so a line the user printed without its newline yet (``print(..., end="")``, or a newline written apart)
can share a line with our record (``the user's lineWARNING - sacred_gpu - ...``). A record whose printed text is not
found whole (a handler that formats differently each time) has its message lines and traceback removed instead.
"""

from __future__ import annotations

import logging
import threading

#: Records remembered per run at most; our loud messages are few (repeats are logged at DEBUG).
MAX_MESSAGES = 200

_ROOT = logging.getLogger("sacred_gpu")


class OwnLines(logging.Handler):
    """The text ``sacred_gpu`` records are printed as while attached (records the user's logging lets through)."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self._printed: list[tuple[str, ...]] = []  # per record: the text each of the user's handlers prints
        self._parts: list[tuple[str, ...]] = []  # per record: its message lines and traceback, the fallback
        self._guard = threading.Lock()

    def attach(self) -> None:
        if self not in _ROOT.handlers:
            _ROOT.addHandler(self)

    def detach(self) -> None:
        _ROOT.removeHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            printed = tuple(dict.fromkeys(self._printed_as(record)))
            parts = [line.strip() for line in record.getMessage().splitlines() if line.strip()]
            if record.exc_info:
                parts.insert(0, logging.Formatter().formatException(record.exc_info))
        except Exception:  # noqa: BLE001 - a message that cannot be formatted is not printed either
            return
        with self._guard:
            if len(self._printed) < MAX_MESSAGES:
                self._printed.append(printed)
                self._parts.append(tuple(parts))

    def _printed_as(self, record: logging.LogRecord) -> list[str]:
        """The text each handler that will print ``record`` writes for it (the handlers Python's logging calls after
        this one: those of ``record``'s logger and its ancestors, as far as they propagate)."""
        texts: list[str] = []
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            for handler in logger.handlers:
                if handler is self or record.levelno < handler.level or not handler.filter(record):
                    continue
                try:
                    texts.append(handler.format(record) + getattr(handler, "terminator", "\n"))
                except Exception:  # noqa: BLE001 - a handler that cannot format it prints nothing for it either
                    continue
            logger = logger.parent if logger.propagate else None  # type: ignore[assignment]
        return texts

    def strip(self, output: str) -> str:
        """``output`` without the text our records were printed as (see the module's docstring)."""
        with self._guard:
            records = list(zip(self._printed, self._parts))
        fallback: list[str] = []
        for printed, parts in records:
            found = [text for text in printed if text in output]
            for text in found:
                output = output.replace(text, "")
            if not found:
                fallback.extend(part for part in parts if part in output)
        for part in dict.fromkeys(fallback):
            output = output.replace(part + "\n", "").replace(part, "")
        return output
