"""A memory cgroup of a test's own, below the one this process is in: a real memory limit
on a process tree, as a login node's per-user limit is. cgroup v1 (the memory
controller's own hierarchy) or v2 (a delegated subtree with the memory controller)."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


class MemoryCgroup:
    def __init__(self, path: Path, version: int):
        self.path, self.version = path, version

    def limit(self, size: int) -> None:
        if self.version == 1:
            (self.path / "memory.limit_in_bytes").write_text(str(size))
            swap = self.path / "memory.memsw.limit_in_bytes"
            if swap.exists():  # no swapping out of trouble either
                with contextlib.suppress(OSError):
                    swap.write_text(str(size))
        else:
            (self.path / "memory.max").write_text(str(size))
            with contextlib.suppress(OSError, FileNotFoundError):
                (self.path / "memory.swap.max").write_text("0")

    def join(self, pid: int | None = None) -> None:
        """Put a process (by default this one; for a preexec_fn, the child) in the cgroup."""
        (self.path / "cgroup.procs").write_text(str(pid or os.getpid()))

    def oom_kills(self) -> int:
        if self.version == 1:
            text = (self.path / "memory.oom_control").read_text()
        else:
            text = (self.path / "memory.events").read_text()
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def peak(self) -> int:
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        path = self.path / name
        return int(path.read_text()) if path.exists() else -1

    def pids(self) -> list[int]:
        return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]

    def remove(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        with contextlib.suppress(OSError):
            self.path.rmdir()


def _own_path(controller: str) -> tuple[Path, int] | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return ROOT / controller / path.lstrip("/"), 1
        if controllers == "" and (ROOT / "cgroup.controllers").exists():
            return ROOT / path.lstrip("/"), 2
    return None


def make_memory_cgroup() -> MemoryCgroup | str:
    """A new, empty memory cgroup; or why there cannot be one here."""
    found = _own_path("memory")
    if found is None:
        return "no memory cgroup controller on this machine"
    parent, version = found
    if version == 2 and "memory" not in (parent / "cgroup.subtree_control").read_text().split():
        return f"the memory controller is not delegated below {parent}"
    path = parent / f"compute-endpoint-test-{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir()
    except OSError as exc:
        return f"cannot make a cgroup in {parent}: {exc}"
    return MemoryCgroup(path, version)
