"""Telling a hung child from a busy one: the liveness policy, and what judging one child needs.

A child answers the supervisor's pings from its main loop. One that has not answered for a
window is judged by what its process did meanwhile: it ran (a long computation holding its
interpreter) or waited to run (a loaded host), so it is busy; or it did neither, so it is
stuck, and it is killed (SIGABRT first, for its threads' stacks).
"""

from __future__ import annotations

import enum
import os

import attrs
import psutil


@attrs.frozen
class Liveness:
    """How a child is judged: pinged every ping_interval_s; no answer for hung_after_s and less
    than busy_cpu_share of a core used or waited for meanwhile is hung (idle threads use far
    less); a hung child asked for its stack is killed abort_grace_s later."""

    ping_interval_s: float = 1.0
    hung_after_s: float = 15.0
    busy_cpu_share: float = 0.25
    abort_grace_s: float = 2.0


class Verdict(enum.Enum):
    ANSWERING = "answering"  # answered within the window
    BUSY = "busy"  # silent, but it ran or waited to run: making progress
    HUNG = "hung"  # silent, and neither ran nor waited to run


@attrs.frozen
class Judgement:
    verdict: Verdict
    cpu_used_s: float = 0.0  # in the window just judged
    cpu_waited_s: float = 0.0


class Health:
    """One child process's health as the supervisor follows it: the pings sent, its last
    answer, what its process had used and waited for when the current window began, and when
    it is to be killed once judged hung."""

    def __init__(self, pid: int | None = None, now: float = 0.0):
        self.pid = pid
        self.ping_seq = 0
        self.last_ping_sent = 0.0
        self.last_answer = now
        self.kill_at = float("inf")  # set once the child is judged hung and asked for its stack
        self._window_start = now
        self._window_cpu = self._window_wait = 0.0
        if pid is not None:
            self.answered(now)

    def answered(self, now: float) -> None:
        self.last_answer = self._window_start = now
        self._window_cpu, self._window_wait = cpu_seconds(self.pid), run_queue_seconds(self.pid)

    def next_ping(self, now: float, interval_s: float) -> int | None:
        """The sequence number of a ping to send now, if one is due."""
        if now - self.last_ping_sent < interval_s:
            return None
        self.ping_seq += 1
        self.last_ping_sent = now
        return self.ping_seq

    def judge(self, now: float, window_s: float, busy_share: float) -> Judgement:
        """After window_s without an answer, BUSY or HUNG by what the process did meanwhile. A
        busy child starts a new window: it is hung only once a whole window passes without
        progress."""
        if now - self._window_start <= window_s:
            return Judgement(Verdict.ANSWERING)
        used = cpu_seconds(self.pid) - self._window_cpu
        waited = run_queue_seconds(self.pid) - self._window_wait
        if used + waited >= busy_share * (now - self._window_start):
            self._window_start = now
            self._window_cpu, self._window_wait = self._window_cpu + used, self._window_wait + waited
            return Judgement(Verdict.BUSY, used, waited)
        return Judgement(Verdict.HUNG, used, waited)

    @property
    def condemned(self) -> bool:
        return self.kill_at != float("inf")


def cpu_seconds(pid: int | None) -> float:
    """CPU time the process has used, all its threads together (0 when it cannot be read)."""
    try:
        times = psutil.Process(pid).cpu_times() if pid else None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0
    return times.user + times.system if times else 0.0


def run_queue_seconds(pid: int | None) -> float:
    """Time the process's threads have spent runnable but waiting for a CPU (Linux's schedstat;
    0 where it cannot be read): on a loaded host a child that makes slow progress spends most
    of its time there, while a stuck one sleeps."""
    if not pid:
        return 0.0
    total = 0
    try:
        for thread in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{thread}/schedstat") as stats:
                total += int(stats.read().split()[1])
    except (OSError, ValueError, IndexError):
        pass  # gone, or a thread ended while we read: what was read is a lower bound
    return total / 1e9
