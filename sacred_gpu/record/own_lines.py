"""Our log lines, kept out of the run's captured output.

Under ``--capture fd`` Sacred captures everything written to the process's stdout and stderr, so the lines our
``sacred_gpu`` loggers print through the user's logging handlers would be stored as the run's output. While a run
is recorded, :class:`OwnLines` listens on the ``sacred_gpu`` logger (it prints nothing) and :meth:`OwnLines.strip`
takes the lines holding one of our messages, and the tracebacks we logged, out of the output before it is stored.
"""

from __future__ import annotations

import logging
import threading

#: Messages remembered per run at most; our loud messages are few (repeats are logged at DEBUG).
MAX_MESSAGES = 200

_ROOT = logging.getLogger("sacred_gpu")


class OwnLines(logging.Handler):
    """The messages ``sacred_gpu`` loggers emit while attached (records the user's logging lets through)."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self._lines: list[str] = []  # each non-blank line of each message
        self._blocks: list[str] = []  # tracebacks, as the standard formatter writes them
        self._guard = threading.Lock()

    def attach(self) -> None:
        if self not in _ROOT.handlers:
            _ROOT.addHandler(self)

    def detach(self) -> None:
        _ROOT.removeHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            lines = [line.strip() for line in record.getMessage().splitlines() if line.strip()]
            block = logging.Formatter().formatException(record.exc_info) if record.exc_info else None
        except Exception:  # noqa: BLE001 - a message that cannot be formatted is not printed either
            return
        with self._guard:
            if len(self._lines) < MAX_MESSAGES:
                self._lines.extend(lines)
            if block and len(self._blocks) < MAX_MESSAGES:
                self._blocks.append(block)

    def strip(self, output: str) -> str:
        """``output`` without our tracebacks and without each line holding one of our messages."""
        with self._guard:
            blocks = [block for block in self._blocks if block in output]
            lines = [line for line in dict.fromkeys(self._lines) if line in output]
        for block in blocks:
            output = output.replace(block + "\n", "").replace(block, "")
        if not lines:
            return output
        return "".join(kept for kept in output.splitlines(keepends=True) if not any(line in kept for line in lines))
