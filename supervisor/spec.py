"""What the supervisor is told: child specs and the restart policy, as frozen data."""

from __future__ import annotations

import enum
import importlib
import os
from collections import deque
from collections.abc import Callable

import attrs


class Restart(enum.Enum):
    """OTP restart types."""

    PERMANENT = "permanent"  # always restarted
    TRANSIENT = "transient"  # restarted only after an abnormal exit
    TEMPORARY = "temporary"  # never restarted


class ExitCode(enum.IntEnum):
    """The tree's exit codes (the supervisor's process exits with one). A child that cannot
    get better by restarting says so with a Halt message (control.py) that carries one of
    these; its own exit status is only logged."""

    OK = os.EX_OK
    BOOT_FAILURE = 3  # the child could not start (missing module, bad environment)
    DEPENDENCY_FAILED = os.EX_SOFTWARE  # 70: something the child depends on died; a new child may fare better
    CONFIG_ERROR = os.EX_CONFIG  # 78: the configuration is wrong
    RESTART_INTENSITY = os.EX_TEMPFAIL  # 75, the supervisor's own: too many restarts, gave up


def _check_target(_instance: object, _attribute: attrs.Attribute, value: str) -> None:
    module, sep, function = value.partition(":")
    if not (module and sep and function):
        raise ValueError(f"child target must be 'module:function', got {value!r}")


@attrs.frozen
class ChildSpec:
    name: str
    target: str = attrs.field(validator=_check_target)  # "package.module:function", called (ParentPipe, config)
    title: str = ""  # process title of the child; its name when empty
    restart: Restart = Restart.PERMANENT
    shutdown_timeout_s: float = 10.0  # after Stop, wait this long, then kill
    # One of many independent children (started at run time, say): its Halt stops only itself,
    # and its restarts count toward an intensity of its own (the policy's numbers), past which
    # it alone stops. The tree's own intensity is for the children it cannot work without.
    isolated: bool = False
    # The silence a child that has not said Ready yet may keep before it is judged hung; None:
    # as for a running child. A start that runs a site's setup (module loads, a venv) may wait
    # on the network for minutes, neither running nor runnable.
    start_timeout_s: float | None = None

    def resolve(self) -> Callable:
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module), function)


@attrs.frozen
class RestartPolicy:
    """OTP restart intensity with exponential backoff between quick crashes.

    More than ``intensity`` restarts within ``period_s`` stops the whole tree (or, for an
    isolated child, that child). A crash restarts the child at once; a child that crashes
    again before it has lived ``healthy_after_s`` waits ``backoff_initial_s``, doubling up to
    ``backoff_max_s``.
    """

    intensity: int = 5
    period_s: float = 60.0
    healthy_after_s: float = 1.0
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 5.0

    def backoff(self, quick_crashes: int) -> float:
        if quick_crashes <= 0:
            return 0.0
        return min(self.backoff_initial_s * 2 ** (quick_crashes - 1), self.backoff_max_s)

    def record(self, restarts: deque[float], now: float) -> bool:
        """Count a restart now in a window of restart times (the tree's, or an isolated
        child's own); whether the window now holds more than the intensity allows."""
        restarts.append(now)
        while restarts and now - restarts[0] > self.period_s:
            restarts.popleft()
        return len(restarts) > self.intensity
