"""The rows of the dispatcher's in-flight table (dispatcher.py), and the policy config.yaml
sets for it."""

from __future__ import annotations

import enum
import time

import attrs

from ..workers.payloads import Payload
from ..workers.pipe_messages import TaskDelivery
from .idle import IdleWatch


class TaskState(enum.Enum):
    QUEUED = "queued"  # received; waiting for an engine
    HANDED = "handed"  # given to the engine, not started there yet (queued in it)
    RUNNING = "running"  # the engine reports a worker took it
    DONE = "done"  # result made; waiting for the broker's confirm


@attrs.define
class InFlight:
    delivery: TaskDelivery  # the latest delivery of this task
    state: TaskState = TaskState.QUEUED
    attempts: int = 0  # engines that died while running it
    unreported_losses: int = 0  # engines that died holding it, with no start reported
    result: Payload | None = None
    extra_deliveries: list[TaskDelivery] = attrs.field(factory=list)  # duplicates to ack with it
    received: float = attrs.field(factory=time.time)  # wall clock, for `status --tasks`


@attrs.frozen
class DispatchPolicy:
    """What config.yaml decides of the dispatcher's work; replaced whole when a SIGHUP reloads it."""

    max_retries_on_system_failure: int = 0
    heartbeat_period_s: float = 30.0
    idle_heartbeats_soft: int = 0
    idle_heartbeats_hard: int = 5760
    # None: any function; else only these (config allowed_functions, canonical UUID text).
    allowed_functions: frozenset[str] | None = None
    # The engine reports each start before the task runs (ThreadPoolEngine, whose tasks run in
    # its own process): a task it did not report started had not started.
    starts_reported_first: bool = False

    def idle_watch(self) -> IdleWatch:
        return IdleWatch(self.idle_heartbeats_soft, self.idle_heartbeats_hard, self.heartbeat_period_s)

    @classmethod
    def from_config(cls, config) -> DispatchPolicy:
        allowed = config.allowed_functions
        return cls(getattr(config.engine, "max_retries_on_system_failure", 0), config.effective_heartbeat_period,
                   config.idle_heartbeats_soft, config.idle_heartbeats_hard,
                   frozenset(allowed) if allowed is not None else None,
                   starts_reported_first=config.engine.type == "ThreadPoolEngine")
