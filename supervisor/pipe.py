"""The child's end of its pipe to the supervisor, and what every child does at boot."""

from __future__ import annotations

import ctypes
import faulthandler
import os
import resource
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection, wait

from .control import Halt, Ping, Pong, Ready
from .spec import ChildSpec, ExitCode

_PR_SET_PDEATHSIG = 1


class ParentPipe:
    """Send to the supervisor; receive from it, answering pings on the way.

    A child's main loop calls ``receive`` often: answering pings there (not from a
    helper thread) is what lets the supervisor tell a hung loop from a busy one.
    """

    def __init__(self, conn: Connection):
        self.conn = conn
        # Any thread may send (an engine reports a task's start from the task's thread): one
        # message at a time, or two would interleave on the pipe.
        self.sending = threading.Lock()

    def fileno(self) -> int:
        return self.conn.fileno()

    def ready(self) -> None:
        self.send(Ready(os.getpid()))

    def send(self, message: object) -> None:
        with self.sending:
            self.conn.send(message)

    def halt(self, code: int, reason: str) -> int:
        """Tell the supervisor that restarting this child cannot help, and why; returns the
        code for the child's main to return (its exit status, which is only logged)."""
        try:
            self.send(Halt(int(code), reason))
        except (OSError, ValueError):
            pass  # the supervisor is gone: nobody is left to stop
        return int(code)

    def receive(self, timeout: float = 0.0) -> list[object]:
        """Every message waiting (or arriving within timeout), pings answered and left out.

        Raises EOFError when the supervisor is gone.
        """
        messages: list[object] = []
        if not wait([self.conn], timeout):
            return messages
        while self.conn.poll():
            message = self.conn.recv()
            if isinstance(message, Ping):
                self.send(Pong(message.seq))
            else:
                messages.append(message)
        return messages


def set_parent_death_signal() -> None:
    """SIGTERM when the parent dies (the kernel's part of die_with_parent). The kernel clears
    it when the process's ids change: a process that drops privileges sets it again."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def die_with_parent(parent: int | None = None) -> None:
    """Exit when the parent dies, even by SIGKILL: the kernel's parent-death signal,
    and a watcher thread for the case where it does not apply. ``parent`` is the pid the
    parent had when it started us: it may be gone already by the time we run."""
    parent = parent or os.getppid()
    set_parent_death_signal()
    if os.getppid() != parent:  # died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # a graceful exit should take less; past this, stop hard
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def report_stacks_on_abort() -> None:
    """On SIGABRT (the supervisor's first blow to a hung child) and on fatal errors, write
    every thread's stack to the stderr this process started with (the endpoint's log), on a
    descriptor of its own: a child may point its fd 2 elsewhere later. No core file: the
    stacks say what is needed, and a core of a large process fills a disk."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    try:
        stream = os.fdopen(os.dup(sys.stderr.fileno()), "w")
    except (OSError, AttributeError, ValueError):
        return  # no stderr to write to
    faulthandler.enable(file=stream, all_threads=True)


def keep_descriptors_to_ourselves() -> None:
    """Make every descriptor but stdin, stdout and stderr close on exec. A spawned child gets
    its ends of the supervisor's pipe and process sentinel as inheritable descriptors, and a
    program it starts with close_fds=False (the SDK's ShellFunction does) would hold them open
    for as long as it runs: the supervisor would see neither the child's death nor its exit."""
    try:
        names = os.listdir("/proc/self/fd")
    except FileNotFoundError:  # not Linux
        names = os.listdir("/dev/fd")
    for name in names:
        fd = int(name)
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:  # the listing's own descriptor, closed by now
                pass


def bootstrap(spec: ChildSpec, conn: Connection, config: object) -> None:
    """The first code of every child process (the multiprocessing target)."""
    keep_descriptors_to_ourselves()
    die_with_parent()
    report_stacks_on_abort()
    parent = ParentPipe(conn)
    try:
        target = spec.resolve()
    except Exception as exc:
        print(f"{spec.name}: cannot load {spec.target}: {exc!r}", file=sys.stderr)
        sys.exit(parent.halt(ExitCode.BOOT_FAILURE, f"cannot load {spec.target}: {exc!r}"))
    sys.exit(target(parent, config) or 0)
