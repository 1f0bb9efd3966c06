"""Sacred drops an observer for the rest of a run after its first exception: every event handler is guarded."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def never_raises(method: F) -> F:
    """Run an event handler so that no exception reaches Sacred (which would drop the observer for the run)."""

    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the training run must go on, whatever failed here
            self._report_failure(method.__name__, exc)
            return None

    return guarded  # type: ignore[return-value]
