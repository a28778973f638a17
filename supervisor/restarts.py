"""What happens when a child exits: every restart rule in one place (supervisord's
``Subprocess.transition``, OTP's restart types and intensity), as a decision the supervisor
then carries out."""

from __future__ import annotations

import enum
from collections import deque

import attrs

from .child import Child
from .spec import Restart, RestartPolicy
from .states import ChildState


class Fate(enum.Enum):
    STOPPED = "stopped"  # it stopped as asked (StopChild, the tree stopping): it stays stopped
    ROLLED = "rolled"  # it stopped as asked for a rolling restart (SIGHUP): started again at once
    ENDED = "ended"  # a temporary child, or a transient one that exited 0: done for good
    HALTED_ALONE = "halted alone"  # it said restarting cannot help, and it is isolated
    HALTED_TREE = "halted the tree"  # it said restarting cannot help: the tree stops with its code
    FORGIVEN = "forgiven"  # the work it was given killed it: restarted at once, not counted
    GAVE_UP_ALONE = "gave up alone"  # an isolated child over its own intensity: it alone stops
    GAVE_UP_TREE = "gave up the tree"  # over the tree's intensity: the tree stops
    BACKOFF = "backoff"  # restarted after a delay (none after a crash that followed a healthy run)


@attrs.frozen
class Decision:
    fate: Fate
    delay_s: float = 0.0  # BACKOFF: how long until the restart
    quick_crashes: int = 0  # BACKOFF: crashes in a row, each before the child had lived healthy_after_s


def decide(child: Child, code: int, uptime: float, tree_stopping: bool, policy: RestartPolicy,
           tree_restarts: deque[float], now: float) -> Decision:
    """The fate of a child that has just exited with code after uptime seconds. Records the
    restart in the intensity window it counts toward (the tree's, or an isolated child's own)."""
    if child.state is ChildState.STOPPING:  # asked to stop: a rolling restart, unless it is to end
        rolled = not tree_stopping and child.spec.restart is not Restart.TEMPORARY and not child.retiring
        return Decision(Fate.ROLLED if rolled else Fate.STOPPED)
    if tree_stopping:  # it went on its own while the tree stops: nothing to restart
        return Decision(Fate.STOPPED)
    if child.halt is not None:  # its last word: restarting cannot help
        return Decision(Fate.HALTED_ALONE if child.spec.isolated else Fate.HALTED_TREE)
    if child.spec.restart is Restart.TEMPORARY or (child.spec.restart is Restart.TRANSIENT and code == 0):
        return Decision(Fate.ENDED)
    if child.forgiven:  # its work killed it: no sign that it cannot run, so no count and no wait
        return Decision(Fate.FORGIVEN)
    if child.spec.isolated:  # one of many independent children: its crashes are its own business
        if policy.record(child.restart_times, now):
            return Decision(Fate.GAVE_UP_ALONE)
    elif policy.record(tree_restarts, now):
        return Decision(Fate.GAVE_UP_TREE)
    quick_crashes = child.quick_crashes + 1 if uptime < policy.healthy_after_s else 0
    return Decision(Fate.BACKOFF, policy.backoff(quick_crashes), quick_crashes)
