"""Child states. Depends on nothing, so any module (and any test) can import it."""

import enum


class ChildState(enum.Enum):
    STARTING = "starting"  # spawned, has not said Ready yet
    RUNNING = "running"  # said Ready and answers pings
    BACKOFF = "backoff"  # exited; waiting out its restart delay
    STOPPING = "stopping"  # asked to stop; waiting for it to exit
    STOPPED = "stopped"  # exited and will not be restarted


# The states of a child whose process lives and is not on its way out.
LIVE_STATES = frozenset({ChildState.STARTING, ChildState.RUNNING})

# Which edges are legal; anything else is a bug in the supervisor.
TRANSITIONS = {
    ChildState.STOPPED: {ChildState.STARTING},
    ChildState.STARTING: {ChildState.RUNNING, ChildState.BACKOFF, ChildState.STOPPING, ChildState.STOPPED},
    ChildState.RUNNING: {ChildState.BACKOFF, ChildState.STOPPING, ChildState.STOPPED},
    ChildState.BACKOFF: {ChildState.STARTING, ChildState.STOPPED},
    ChildState.STOPPING: {ChildState.STOPPED},
}
