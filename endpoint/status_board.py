"""The running tree's status as `globus-compute-endpoint status` reads it: a JSON file in the
endpoint's directory (0600, replaced atomically, so a reader never sees half of it) that the
supervisor rewrites from its loop at most once a second. Reading it never asks the
supervisor or the service anything, so `status` answers at once even from a busy tree."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from ..protocol.files import write_private_file
from ..supervisor.status import TreeStatus

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
INTERVAL_S = 1.0


class StatusBoard:
    def __init__(self, directory: Path):
        self.path = directory / STATUS_FILE
        self._next_write = 0.0
        self._children: object = None  # the children's states and pids last written
        self._failed = False

    def publish(self, now: float, tree: TreeStatus, snapshot: Callable[[], dict]) -> None:
        """Write snapshot(), unless one was written less than INTERVAL_S ago and no child of
        the tree has changed state since (a restart shows at once). snapshot() is called only
        to write: it counts the tasks in flight, tens of thousands under a backlog."""
        states = sorted((role, child.state.value, child.pid) for role, child in tree.children.items())
        if now < self._next_write and states == self._children:
            return
        self._next_write, self._children = now + INTERVAL_S, states
        try:
            write_private_file(self.path, json.dumps(snapshot(), default=str))
            self._failed = False
        except OSError as exc:  # a full disk must not stop the tree: say it once
            if not self._failed:
                log.warning("cannot write the status file %s: %s", self.path, exc)
            self._failed = True

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@attrs.frozen
class LinkStatus:
    """A link's broker connection as it last reported it."""

    connected: bool
    detail: str  # what to show: where it is connected, or why it is not
    since: float  # wall clock

    def to_json(self) -> dict:
        return {"connected": self.connected, "detail": self.detail, "since": self.since}


class TreeLedger:
    """What a dispatcher keeps for the tree's status: the tree as the supervisor last gave
    it, each link's broker connection, when status reports go out; written to the board
    (when there is one) every tick."""

    def __init__(self, board: StatusBoard | None = None):
        self.board = board
        self.tree = TreeStatus()
        self.links: dict[str, LinkStatus] = {}  # link role -> its broker connection as last reported
        self.next_report = 0.0  # monotonic time the next status report is due
        self.last_report_at: float | None = None  # wall clock of the last status report sent

    def link_state(self, role: str, connected: bool, detail: str, since: float) -> None:
        self.links[role] = LinkStatus(connected, detail, since)

    def connected(self, role: str) -> bool:
        link = self.links.get(role)
        return link is not None and link.connected

    def observe(self, now: float, tree: TreeStatus, snapshot: Callable[[], dict]) -> None:
        self.tree = tree
        if self.board is not None:
            self.board.publish(now, tree, snapshot)

    def report_due(self, now: float, period_s: float) -> bool:
        """Whether a status report goes out now; if so, the next is due a period later."""
        if now < self.next_report:
            return False
        self.next_report, self.last_report_at = now + period_s, time.time()
        return True

    def snapshot(self, endpoint_id: str, started: float | None, period_s: float, **more: object) -> dict:
        return {"endpoint_id": endpoint_id, "supervisor_pid": os.getpid(), "written": time.time(),
                "started": started, "tree": self.tree.to_json(),
                "links": {role: link.to_json() for role, link in self.links.items()},
                "last_status_report": self.last_report_at, "heartbeat_period": period_s, **more}


def read_status(directory: Path) -> dict | None:
    try:
        snapshot = json.loads((directory / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return snapshot if isinstance(snapshot, dict) else None


def user_endpoints_of(directory) -> dict:
    """A running template-capable endpoint's user endpoints, as its supervisor last wrote them."""
    snapshot = read_status(directory.path)
    found = (snapshot or {}).get("user_endpoints")
    return found if isinstance(found, dict) else {}
