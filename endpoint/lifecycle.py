"""Starting and stopping an endpoint's process tree from the CLI."""

from __future__ import annotations

import signal
from collections.abc import Callable

import psutil

DEFAULT_STOP_TIMEOUT_S = 10.0


class StopError(Exception):
    """The endpoint's processes could not be stopped; str() says which are left."""


def stop_process(pid: int, timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
                 echo: Callable[[str], None] = lambda _: None) -> None:
    """SIGTERM pid and wait for it; then kill whatever of its tree is still alive.

    The tree is listed before the signal, because once the parent is gone its
    children are reparented and can no longer be found through it.
    """
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    root.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(tree, timeout=timeout_s)
    if not alive:
        return
    echo(f"{len(alive)} process(es) still running after {timeout_s:g} s; killing "
         + ", ".join(str(p.pid) for p in alive))
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    _, still = psutil.wait_procs(alive, timeout=5)
    if still:
        raise StopError("could not kill pid(s) " + ", ".join(str(p.pid) for p in still))
