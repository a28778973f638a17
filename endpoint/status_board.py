"""The running tree's status as `globus-compute-endpoint status` reads it: a JSON file in the
endpoint's directory (0600, replaced atomically, so a reader never sees half of it) that the
supervisor rewrites from its loop at most once a second. Reading it never asks the
supervisor or the service anything, so `status` answers at once even from a busy tree."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..protocol.files import write_private_file

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
INTERVAL_S = 1.0


class StatusBoard:
    def __init__(self, directory: Path):
        self.path = directory / STATUS_FILE
        self._next_write = 0.0
        self._children: object = None  # the children's states and pids last written
        self._failed = False

    def publish(self, now: float, snapshot: dict) -> None:
        """Write the snapshot, unless one was written less than INTERVAL_S ago and no child
        has changed state since (a restart shows at once)."""
        children = (snapshot.get("tree") or {}).get("children") or {}
        states = sorted((role, child.get("state"), child.get("pid")) for role, child in children.items())
        if now < self._next_write and states == self._children:
            return
        self._next_write, self._children = now + INTERVAL_S, states
        try:
            write_private_file(self.path, json.dumps(snapshot, default=str))
            self._failed = False
        except OSError as exc:  # a full disk must not stop the tree: say it once
            if not self._failed:
                log.warning("cannot write the status file %s: %s", self.path, exc)
            self._failed = True

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


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
