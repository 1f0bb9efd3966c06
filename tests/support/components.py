"""Dash component trees searched the way a test asks about them: by id, by type, by the text they show (never by a
substring of the whole tree's repr, which still matches when the part asked about is gone)."""

from __future__ import annotations

from typing import Any


def walk(component: Any) -> list[Any]:
    """The component and every component below it."""
    found = [component] if hasattr(component, "_traverse") else []
    if hasattr(component, "_traverse"):
        found += list(component._traverse())
    elif isinstance(component, (list, tuple)):
        for item in component:
            found += walk(item)
    return found


def text(component: Any) -> str:
    """The text a component shows (its string children, depth first)."""
    if component is None:
        return ""
    if isinstance(component, str):
        return component
    if isinstance(component, (int, float)):
        return str(component)
    if isinstance(component, (list, tuple)):
        return "".join(text(item) for item in component)
    return text(getattr(component, "children", None))


def by_id(root: Any, component_id: Any) -> Any:
    """The one component of ``root`` with id ``component_id`` (StopIteration where there is none)."""
    return next(c for c in walk(root) if getattr(c, "id", None) == component_id)


def of_type(root: Any, kind: type) -> list[Any]:
    return [c for c in walk(root) if isinstance(c, kind)]
