"""A multi-user, high-assurance endpoint's audit log: one line per task event of every user
endpoint, in the official's format,

    2026-12-04T20:31:07.123+00:00 uid=1001 pid=4242 uep=<id> fid=<function> tid=<task> bid= RECEIVED

written by the root manager alone (0600) from what each sub-tree reports over its pipe: the
uid, pid and endpoint id come from the manager's own record of the child that sent the
events, so one user's sub-tree can neither write another's lines nor forge its own
identity. Rotation is logrotate's (copytruncate, or a SIGHUP-free reopen: each write opens
the file again)."""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path

from ..workers.pipe_messages import TaskEvents

log = logging.getLogger(__name__)

ACTIONS = ("RECEIVED", "RUNNING", "EXEC_END", "FAILED")


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat()


def _clean(text: str) -> str:
    """One line: what a task's error says cannot start a line of its own."""
    return text.replace("\n", " ").replace("\r", "").replace("\0", "")


class AuditLog:
    def __init__(self, path: Path, endpoint_id: str):
        self.path, self.endpoint_id = path, endpoint_id
        self._append(f"{_now()} uid={os.getuid()} pid={os.getpid()} eid={endpoint_id} Begin CEP session =====")

    def write(self, uid: int, pid: int | None, user_endpoint_id: str, events: TaskEvents) -> None:
        lines = []
        for event in events.events:
            if event.action not in ACTIONS:
                continue
            line = (f"{_now()} uid={uid} pid={pid} uep={user_endpoint_id} fid={_clean(event.function_id)} "
                    f"tid={_clean(event.task_id)} bid= {event.action}")
            lines.append(line + (f" - {_clean(event.detail)[:500]}" if event.detail else ""))
        if lines:
            self._append("\n".join(lines))

    def close(self) -> None:
        self._append(f"{_now()} uid={os.getuid()} pid={os.getpid()} eid={self.endpoint_id} End CEP session -----")

    def _append(self, text: str) -> None:
        try:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            with os.fdopen(descriptor, "a") as audit:
                audit.write(text + "\n")
        except OSError as exc:  # a full disk: the administrator must hear of it, the tree goes on
            log.error("cannot write the audit log %s: %s", self.path, exc)
