"""Waiting in tests for something that happens in another process."""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float = 15, what: str = "the condition", interval: float = 0.1):
    """predicate()'s first true value, asked every interval; fails naming what did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(interval)
