"""The processes of an endpoint's tree as `stop` and `start` find them: the supervisor named in
the pid file, leftovers of an unclean stop (found by their titles), and how each is stopped
or killed."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable

import psutil

from ..workers.settings import tree_title
from .directory import EndpointDirectory
from .errors import EndpointError

DEFAULT_STOP_TIMEOUT_S = 30.0
Echo = Callable[[str], None]
log = logging.getLogger(__name__)


class StopError(EndpointError):
    """A process of the tree could not be stopped; str() says which."""


def leftover_processes(directory: EndpointDirectory) -> list[psutil.Process]:
    """Live processes whose title says they belong to this endpoint (after an unclean stop)."""
    endpoint_id = directory.read_endpoint_id()
    if endpoint_id is None:
        return []
    prefix = tree_title(endpoint_id, directory.name)
    found = []
    # Only this user's: anyone can give a process any title, and root must not kill another
    # user's process for it (nor may a user signal root's).
    for process in psutil.process_iter(["cmdline", "uids"]):
        cmdline = process.info.get("cmdline") or []
        uids = process.info.get("uids")
        if (cmdline and cmdline[0].startswith(prefix) and process.pid != os.getpid()
                and uids is not None and uids.real == os.getuid()):
            found.append(process)
    return found


LEFTOVER_GRACE_S = 2.0


def stop_process(pid: int, timeout_s: float = DEFAULT_STOP_TIMEOUT_S, echo: Echo = lambda _: None) -> bool:
    """SIGTERM pid and wait for it and its tree; kill whatever is left after timeout_s.

    The tree is listed before the signal: once the parent is gone its children are
    reparented and no longer found through it. Returns True if it stopped by itself.
    """
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return True
    root.send_signal(signal.SIGTERM)
    if wait_gone([root], timeout_s):
        alive = [p for p in tree if _alive(p)]
    else:
        # The supervisor stops its children before it exits: what outlives it by more than a
        # moment is a leftover (a helper the kernel reparented), not a child finishing work.
        alive = wait_gone(tree[1:], LEFTOVER_GRACE_S)
    if not alive:
        return True
    echo(f"{len(alive)} process(es) still running after {timeout_s:g} s; killing "
         + ", ".join(str(p.pid) for p in alive))
    kill_all(alive)
    return False


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(processes: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """The processes still alive after up to timeout_s. A zombie counts as gone: it has
    exited, and reaping it is up to its new parent (psutil's own wait polls a reparented
    zombie until whatever init there is reaps it, which may take seconds)."""
    deadline = time.monotonic() + timeout_s
    alive = list(processes)
    while (alive := [p for p in alive if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return alive


def kill_all(processes: list[psutil.Process]) -> None:
    for process in processes:
        try:
            process.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass  # gone already; or not ours to kill after all (named below)
    still = wait_gone(processes, 5.0)
    if still:
        raise StopError("could not kill pid(s) " + ", ".join(str(p.pid) for p in still))


def clean_up_unclean_stop(directory: EndpointDirectory, echo: Echo) -> None:
    leftovers = leftover_processes(directory)
    echo(f"Endpoint {directory.name} did not stop cleanly last time; cleaning up"
         + (f" ({len(leftovers)} leftover process(es))" if leftovers else ""))
    if leftovers:
        kill_all(leftovers)
    directory.remove_pid_file()
