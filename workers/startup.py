"""What every child of the endpoint's tree does first, links and engine alike."""

from __future__ import annotations

import signal

from setproctitle import setproctitle

from .logs import setup_logging
from .settings import WorkerSettings


def begin_child(settings: WorkerSettings, role: str) -> None:
    """Its process title (the tree's, with its role), its logging, and ^C left to the
    supervisor: a ^C reaches the whole process group, and the supervisor decides."""
    setproctitle(settings.role_title(role))
    setup_logging(settings.log_file, role.replace(" ", "-"), settings.debug)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
