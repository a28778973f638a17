"""Running under systemd: stay in the foreground, and say when the endpoint is ready and
when it stops (sd_notify(3), for a unit of Type=notify).

The protocol is one datagram per message on the AF_UNIX socket named by $NOTIFY_SOCKET (a
path, or an abstract name given as "@name"): a few lines of the standard library rather
than a binding. Nothing here fails the endpoint: a notification that cannot be sent is
logged and forgotten, as systemd's own sd_notify does.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def started_by_systemd() -> bool:
    """systemd sets INVOCATION_ID for every unit it runs, and NOTIFY_SOCKET for Type=notify."""
    return bool(os.environ.get("INVOCATION_ID") or os.environ.get("NOTIFY_SOCKET"))


def notify(state: str) -> bool:
    """Send state (e.g. "READY=1", "STOPPING=1", "STATUS=...") to systemd; False when there
    is no socket to send it to, or sending failed."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError as exc:
        log.warning("could not tell systemd %s: %s", state.split("=", 1)[0], exc)
        return False
