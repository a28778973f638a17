"""Giving memory back to the system once a burst of large bodies has passed.

glibc's malloc serves a large block from its heap once a block of that size has been
freed (its mmap threshold rises with what it frees), and a heap shrinks only from its
top: after a backlog of 1 MiB bodies a process keeps hundreds of MB it no longer uses.
A fixed threshold keeps large blocks in mappings of their own, unmapped when freed;
``release_freed_memory`` returns what the heaps hold free. Elsewhere than glibc, both
do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h
LARGE_BLOCK = 128 * 1024  # glibc's own initial threshold; fixing it stops it from rising


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def map_large_blocks_apart() -> None:
    """In this process, from now on: a freed large block goes back to the system at once."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK)


def release_freed_memory() -> None:
    """Return to the system what this process's heaps hold free."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
