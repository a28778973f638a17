"""The supervisor's own pipe messages. Children and supervisor exchange these besides
whatever the plugged-in dispatcher routes."""

from __future__ import annotations

import attrs


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
class StopTree:
    """From the dispatcher, addressed to SUPERVISOR: stop the whole tree, gracefully, for this reason."""

    reason: str
