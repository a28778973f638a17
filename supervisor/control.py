"""The supervisor's own pipe messages. Children and supervisor exchange these besides
whatever the plugged-in dispatcher routes."""

from __future__ import annotations

import attrs

from .spec import ChildSpec


@attrs.frozen
class Ready:
    """A child finished booting and serves."""

    pid: int


@attrs.frozen
class Halt:
    """A child's last word before it exits: restarting cannot help (it cannot start, or its
    configuration is wrong), so stop the tree with this exit code and reason. This message is
    the only way a child stops its tree: an exit status means nothing to the supervisor, since
    a child that runs user code may exit with any status, and die by any signal."""

    code: int
    reason: str


@attrs.frozen
class Ping:
    seq: int


@attrs.frozen
class Pong:
    seq: int


@attrs.frozen
class Stop:
    """Finish what you are doing and exit 0."""

    reason: str = ""


# The address of the supervisor itself in what a dispatcher routes.
SUPERVISOR = "supervisor"
# The supervisor's own parent, for a sub-tree's supervisor (dropped at the root): what the
# parent learns, it learns from the pipe of the child it started, so it knows who sent it.
PARENT = "parent"


@attrs.frozen
class StartChild:
    """From the dispatcher, to SUPERVISOR: start a child at run time (OTP's
    simple_one_for_one). Its spec's restart type rules as for any child; once it has ended
    for good (stopped, or a TRANSIENT one exited 0) it leaves the tree. Ignored while a child
    of that name lives."""

    spec: ChildSpec
    config: object


@attrs.frozen
class StopChild:
    """From the dispatcher, to SUPERVISOR: stop that child gracefully, and do not restart it."""

    name: str
    reason: str = ""


@attrs.frozen
class Forgive:
    """From the dispatcher, to SUPERVISOR, while a child's exit is reported to it: the work the
    child was given killed it (a task that crashed the process running it), not the child
    itself. The restart intensity is there to stop a child that cannot run at all, so this
    crash does not count toward it, nor does it lengthen the child's backoff."""

    name: str
    why: str


@attrs.frozen
class StopTree:
    """From the dispatcher, addressed to SUPERVISOR: stop the whole tree, gracefully, for this reason."""

    reason: str
