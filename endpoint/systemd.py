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
    """systemd sets NOTIFY_SOCKET for a unit of Type=notify, and INVOCATION_ID for every unit it
    runs. Every process of a unit inherits INVOCATION_ID (a CI runner's shell, and each command
    it runs): it counts only when systemd itself is the parent, as it is of ExecStart."""
    if os.environ.get("NOTIFY_SOCKET"):
        return True
    if not os.environ.get("INVOCATION_ID"):
        return False
    try:
        with open(f"/proc/{os.getppid()}/comm") as comm:
            return comm.read().strip() == "systemd"
    except OSError:
        return False


class Notifier:
    """sd_notify to the socket systemd gave this process. Taken out of the environment when
    made, so that no process of the tree inherits it (systemd listens to the main process
    only, NotifyAccess=main, and a child's READY=1 would be a lie anyway)."""

    def __init__(self, address: str | None):
        self.address = address

    @classmethod
    def take_from_environment(cls) -> Notifier:
        return cls(os.environ.pop("NOTIFY_SOCKET", None))

    def __call__(self, state: str) -> bool:
        """Send state ("READY=1", "STOPPING=1", "STATUS=...", one per line); False when there
        is no socket to send it to, or sending failed."""
        if not self.address:
            return False
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                sock.sendall(state.encode())
            return True
        except OSError as exc:
            log.warning("could not tell systemd %s: %s", state.split("=", 1)[0], exc)
            return False
