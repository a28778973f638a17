"""Child targets for the supervisor tests (imported by spawned processes)."""

from __future__ import annotations

import time
from multiprocessing import current_process

from setproctitle import setproctitle

from compute_endpoint.supervisor.control import Stop
from compute_endpoint.supervisor.spec import ExitCode


def echo(parent, config) -> int:
    setproctitle(f"{config['title']} {current_process().name}")
    parent.ready()
    if config.get("send_from") == current_process().name:
        parent.send(("echo", f"hello from {current_process().name}"))
    while True:
        for message in parent.receive(timeout=0.5):
            if isinstance(message, Stop):
                return 0
            kind, value = message
            if kind == "echo":
                parent.send(("echoed", value))
            elif kind == "hang":
                time.sleep(3600)

            elif kind == "exit":
                return value


def spawn_then_echo(parent, config) -> int:
    """Starts a long sleep as the SDK's ShellFunction starts a command (close_fds=False, so it
    inherits every descriptor this process lets it); then echoes."""
    import subprocess

    subprocess.Popen(["sleep", "60"], close_fds=False)
    return echo(parent, config)


def busy_then_echo(parent, config) -> int:
    """Computes for 3 s right after it is ready, answering nothing meanwhile; then echoes."""
    setproctitle(f"{config['title']} {current_process().name}")
    parent.ready()
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        pass
    parent.send(("computed", 3.0))  # the test's event: it came through its busy spell
    return echo(parent, config)


def hang_after_ready(parent, config) -> int:
    """Says it is ready, then waits on nothing, answering nothing: hung."""
    setproctitle(f"{config['title']} {current_process().name}")
    parent.ready()
    time.sleep(3600)
    return 0


def config_error(parent, config) -> int:
    return parent.halt(ExitCode.CONFIG_ERROR, "its configuration is wrong")


def exit_with_halt_status_after_ready(parent, config) -> int:
    """As user code may: exit with the very statuses that once meant 'halt', unannounced."""
    setproctitle(f"{config['title']} {current_process().name}")
    parent.ready()
    time.sleep(0.3)
    return int(current_process().name.split("-")[-1])  # the status is the child's name's last part


def flood(parent, config) -> int:
    """Writes many big messages without reading, as a busy engine does: the supervisor's
    answers pile up meanwhile. Reports how many came back."""
    setproctitle(f"{config['title']} {current_process().name}")
    parent.ready()
    count, payload = 200, b"x" * 256 * 1024
    for _ in range(count):
        parent.send(("flood", payload))
    answered = 0
    while answered < count:
        for message in parent.receive(timeout=0.5):
            if isinstance(message, Stop):
                return 0
            answered += message[0] == "flooded"
    parent.send(("done", answered))
    while True:
        for message in parent.receive(timeout=0.5):
            if isinstance(message, Stop):
                return 0


def exit_at_once(parent, config) -> int:
    setproctitle(f"{config['title']} {current_process().name}")
    parent.ready()
    return 0


def starved_then_echo(parent, config) -> int:
    """After it is ready, computes for 3 s answering nothing, on one CPU shared at the lowest
    priority with two busy processes: a child crawling on a loaded host, which gets a sliver
    of the CPU and waits for it the rest of the time."""
    import os
    import subprocess
    import sys

    setproctitle(f"{config['title']} {current_process().name}")
    parent.ready()
    cpu = min(os.sched_getaffinity(0))
    hog = f"import os, time\nos.sched_setaffinity(0, {{{cpu}}})\nend = time.time() + 6\nwhile time.time() < end: pass"
    hogs = [subprocess.Popen([sys.executable, "-c", hog]) for _ in range(2)]
    os.sched_setaffinity(0, {cpu})
    os.nice(19)
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        pass
    for hog_process in hogs:
        hog_process.kill()
        hog_process.wait()
    parent.send(("computed", 3.0))
    return echo(parent, config)


def answering_slow_start(parent, config) -> int:
    """Takes 3 s to say it is ready, serving its pipe meanwhile, as a tree whose own children
    are starting does."""
    setproctitle(f"{config['title']} {current_process().name}")
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        parent.receive(timeout=0.1)
    return echo(parent, config)


def silent_slow_start(parent, config) -> int:
    """Takes 3 s to say it is ready, asleep and answering nothing (a site's setup waiting on
    the network)."""
    setproctitle(f"{config['title']} {current_process().name}")
    time.sleep(3.0)
    return echo(parent, config)
