"""What the ending Sacred ``Run`` holds that its events do not hand over: its heartbeat thread and its output's tail.

Sacred (0.8.7) reads its capture at each heartbeat only. A run that fails or is interrupted leaves its capture with
the exception: the capture sets its last text aside (``CapturedStdout.final``) and closes, and the final heartbeat
finds it closed and hands the output as it was at the beat before, so the lines printed since are given to no
observer (a run failing at once had printed two lines and stored none). :func:`full_output` takes them from there.
"""

from __future__ import annotations

import logging
import sys
import threading

import sacred.run

logger = logging.getLogger(__name__)


def ending_run() -> sacred.run.Run | None:
    """The Sacred ``Run`` up the caller's stack (the one emitting the event being handled); ``None`` when the event
    did not come from a ``Run`` (a test calling it directly)."""
    frame = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, sacred.run.Run):
            return owner
        frame = frame.f_back
    return None


def heartbeat_thread(run: sacred.run.Run | None) -> threading.Thread | None:
    """``run``'s heartbeat thread (``None`` without a run or heartbeats)."""
    beat = getattr(run, "_heartbeat", None)
    return beat if isinstance(beat, threading.Thread) else None


def full_output(run: sacred.run.Run | None) -> str | None:
    """``run``'s whole captured output as Sacred would have given it, the text its capture set aside when it closed
    included, through the run's ``captured_out_filter``; ``None`` when nothing was set aside (the beats handed all
    of it) or the run's capture is not Sacred's as we know it. Reads, never changes, Sacred's state."""
    capture = getattr(run, "_output_file", None)
    tail = getattr(capture, "final", None)
    if not tail or not getattr(capture, "closed", False):
        return None
    if isinstance(tail, bytes):
        tail = tail.decode("utf-8", "replace")
    if not isinstance(tail, str):
        return None
    text = (run.captured_out or "") + tail  # type: ignore[union-attr]
    output_filter = getattr(run, "captured_out_filter", None)
    if output_filter is not None:
        text = output_filter(text)
    return text if isinstance(text, str) else None
