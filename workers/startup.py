"""What every child of the endpoint's tree does first, links and engine alike."""

from __future__ import annotations

import signal
from typing import Protocol

from setproctitle import setproctitle

from .logs import setup_logging


class ChildSettings(Protocol):
    """What begin_child reads of a child's settings (frozen, so read-only here)."""

    @property
    def log_file(self) -> str: ...

    @property
    def debug(self) -> bool: ...

    def role_title(self, role: str) -> str: ...


def begin_child(settings: ChildSettings, role: str) -> None:
    """Its process title (the tree's, with its role), its logging, and ^C left to the
    supervisor: a ^C reaches the whole process group, and the supervisor decides."""
    setproctitle(settings.role_title(role))
    setup_logging(settings.log_file, role.replace(" ", "-"), settings.debug)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
