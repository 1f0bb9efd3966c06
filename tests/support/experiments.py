"""Real Sacred experiments for the tests: :func:`run_experiment` creates and runs one (so Sacred records this file
as the experiment's main file and source)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sacred import Experiment

#: Sacred options every test run uses: frequent heartbeats, and capture that coexists with pytest's.
FAST = {"--beat-interval": 0.05, "--capture": "sys"}


def run_experiment(
    main: Callable[..., Any],
    *observers: Any,
    config: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    name: str = "test_experiment",
) -> Any:
    """Run ``main`` as a real Sacred experiment with the given observers; returns Sacred's ``Run``.

    An exception raised by ``main`` propagates, as Sacred re-raises it after notifying the observers.
    """
    ex = Experiment(name, save_git_info=False)
    ex.add_config(config or {"lr": 0.01})
    ex.main(main)
    ex.observers.extend(observers)
    return ex.run(options={**FAST, **(options or {})})
