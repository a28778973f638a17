"""The tree as the supervisor shows it to its dispatcher every tick: frozen data, not dicts
looked up by string keys. ``to_json`` is the form status files and reports carry."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from .states import LIVE_STATES, ChildState


@attrs.frozen
class ChildStatus:
    state: ChildState
    pid: int | None
    since: float  # wall clock of the last state change
    restarts: int

    @property
    def live(self) -> bool:
        """Its process lives (starting or running), or is about to (backoff), or is on its way out."""
        return self.state is not ChildState.STOPPED

    @property
    def serving(self) -> bool:
        return self.state in LIVE_STATES

    def to_json(self) -> dict:
        return {"state": self.state.value, "pid": self.pid, "since": self.since, "restarts": self.restarts}

    @classmethod
    def from_json(cls, data: Mapping) -> ChildStatus:
        """Back from a status file (ValueError, KeyError or TypeError when it is not one)."""
        pid = data.get("pid")
        return cls(ChildState(data["state"]), int(pid) if pid is not None else None, float(data.get("since", 0.0)),
                   int(data.get("restarts", 0)))


@attrs.frozen
class TreeStatus:
    children: Mapping[str, ChildStatus] = attrs.field(factory=dict)
    restarts_in_window: int = 0
    stopping: str | None = None  # why the tree is stopping, once it is

    def to_json(self) -> dict:
        return {"children": {name: child.to_json() for name, child in self.children.items()},
                "restarts_in_window": self.restarts_in_window, "stopping": self.stopping}

    @classmethod
    def from_json(cls, data: Mapping) -> TreeStatus:
        """Back from a status file; a child it cannot read is left out."""
        children = {}
        for name, child in (data.get("children") or {}).items():
            try:
                children[str(name)] = ChildStatus.from_json(child)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
        stopping = data.get("stopping")
        return cls(children, int(data.get("restarts_in_window") or 0), str(stopping) if stopping else None)
