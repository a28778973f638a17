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
class StopTree:
    """From the dispatcher, addressed to SUPERVISOR: stop the whole tree, gracefully, for this reason."""

    reason: str
