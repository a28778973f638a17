"""Run a function in a forked child and take back its value or its exception. What the
function imports (a heavy library, to check something once) stays in the child: a
long-lived caller, and every process it forks later, stays small."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class ThrowawayProcessFailed(RuntimeError):
    """The child died, or what it sent back could not be read."""


def in_throwaway_process(function: Callable[..., T], *args: Any) -> T:
    """function(*args), run in a forked child; its return value, or its exception raised
    here. Both must pickle (an exception that does not is raised as its message)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(read_end)
            try:
                outcome: tuple[bool, Any] = (True, function(*args))
            except BaseException as exc:  # noqa: BLE001 (every failure goes back to the caller)
                outcome = (False, exc)
            try:
                data = pickle.dumps(outcome)
            except Exception:
                data = pickle.dumps((False, ThrowawayProcessFailed(str(outcome[1]))))
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(data)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise ThrowawayProcessFailed(f"the checking process ended without an answer (wait status {status})")
    succeeded, value = pickle.loads(data)
    if succeeded:
        return value
    raise value
