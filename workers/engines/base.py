"""What the engine process drives (the Engine interface), and the engine a config names.

An engine takes tasks and calls ``done`` with each task's outcome (its packed Result, or
TaskLost when the worker running it died), from whatever thread it likes; the engine
process wakes on it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..pipe_messages import TaskDelivery, TaskLost, TaskResult

log = logging.getLogger(__name__)

Done = Callable[[TaskResult | TaskLost], None]  # told each task's outcome, from any thread
Started = Callable[[str], None]  # told each task id as a worker starts it, from any thread


def ignore_start(_task_id: str) -> None:
    pass


class Engine(Protocol):
    @property
    def capacity(self) -> int: ...

    def submit(self, task: TaskDelivery, done: Done) -> None: ...

    def submit_many(self, tasks: tuple[TaskDelivery, ...], done: Done) -> None: ...

    def status(self) -> dict: ...

    def failure(self) -> str | None: ...

    def abandon(self) -> None: ...

    def shutdown(self, cancel_pending: bool) -> None: ...


class ResourceSpecificationError(ValueError):
    pass


# How a task message says it has no resource specification (the header's JSON text).
NO_SPECIFICATION = (None, "", "null", "{}")


def has_resource_specification(headers: Mapping[str, Any]) -> bool:
    return headers.get("resource_specification") not in NO_SPECIFICATION


def check_no_resource_specification(engine: str, task: TaskDelivery) -> None:
    if has_resource_specification(task.headers):
        raise ResourceSpecificationError(
            f"{engine} does not support resource_specification (got {task.headers['resource_specification']}); "
            "use GlobusComputeEngine for per-task priority, GlobusMPIEngine for multi-node (MPI) tasks")


def task_time_limit(configured: float | None) -> float | None:
    """The engine's task_timeout_s, else the official endpoint's GC_TASK_TIMEOUT (seconds, in
    the endpoint's environment); None: no limit. A GC_TASK_TIMEOUT that is no number is
    reported and ignored, as the official ignores 0."""
    if configured:
        return float(configured)
    text = os.environ.get("GC_TASK_TIMEOUT", "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        log.warning("GC_TASK_TIMEOUT=%r is not a number of seconds; tasks run without a time limit", text)
        return None
    return value if value > 0 else None


def build_engine(engine_config: Mapping[str, Any], endpoint_id: str, run_dir: str = ".",
                 on_start: Started = ignore_start) -> Engine:
    options = dict(engine_config)
    kind = options.pop("type")
    options.pop("max_retries_on_system_failure", None)  # the dispatcher's business
    options.pop("allowed_serializers", None)  # the engine process's business (engine.py)
    label = options.pop("label", None)
    options["task_timeout_s"] = task_time_limit(options.get("task_timeout_s"))
    if kind in ("GlobusComputeEngine", "GlobusMPIEngine"):
        from . import htex, htex_mpi  # heavy: Parsl

        engine_class = htex.GlobusComputeEngine if kind == "GlobusComputeEngine" else htex_mpi.GlobusMPIEngine
        return engine_class(endpoint_id, run_dir=run_dir, on_start=on_start, label=label, **options)
    from .pools import ENGINES

    return ENGINES[kind](endpoint_id, on_start=on_start, **options)
