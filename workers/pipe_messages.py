"""The endpoint's pipe messages, each carrying a batch so one pipe hop moves many tasks.

Flow: task link -TasksReceived-> dispatcher -RunTasks-> engine -ResultsDone->
dispatcher -PublishResults-> result link -ResultsConfirmed-> dispatcher
-AckDeliveries-> task link. A delivery is acknowledged only once its result is
confirmed by the broker. Task bodies and results larger than a few tens of KiB travel
as references to the one file that holds them (payloads.py).
"""

from __future__ import annotations

import attrs

from .payloads import Payload
from .settings import PublishTarget


@attrs.frozen
class TaskDelivery:
    """One task as the broker delivered it to the current task link."""

    task_id: str
    delivery_tag: int
    generation: str  # which task link channel the tag belongs to
    headers: dict
    body: Payload
    problem: str | None = None  # why it cannot run (e.g. too large): answered with an error


@attrs.frozen
class TaskResult:
    task_id: str
    packed: Payload  # a packed messagepack Result


@attrs.frozen
class TaskLost:
    """A task whose worker died under it (any exit status, any signal): the dispatcher runs it
    again under max_retries_on_system_failure, or fails it saying ``why``."""

    task_id: str
    why: str  # "the worker running this task exited with status 3"


@attrs.frozen
class TasksLost:
    lost: tuple[TaskLost, ...]


@attrs.frozen
class TasksReceived:
    deliveries: tuple[TaskDelivery, ...]


@attrs.frozen
class RunTasks:
    tasks: tuple[TaskDelivery, ...]


@attrs.frozen
class TasksStarted:
    """Engine -> supervisor: these tasks began to run (a worker took them). Only a task that
    started counts as a try when its engine dies; the others go to the next engine as they are."""

    task_ids: tuple[str, ...]


@attrs.frozen
class ResultsDone:
    results: tuple[TaskResult, ...]


@attrs.frozen
class PublishResults:
    results: tuple[TaskResult, ...]


@attrs.frozen
class ResultsConfirmed:
    task_ids: tuple[str, ...]


@attrs.frozen
class AckDeliveries:
    generation: str
    delivery_tags: tuple[int, ...]


@attrs.frozen
class PauseConsuming:
    """Stop taking new tasks (the tree is stopping); keep acknowledging."""


@attrs.frozen
class EngineStatus:
    figures: dict


@attrs.frozen
class PublishStatus:
    packed: bytes  # a packed EPStatusReport


@attrs.frozen
class StopRequested:
    """The Compute service asked the endpoint to stop (``stop --remote``), on its command queue."""

    reason: str


@attrs.frozen
class BrokerState:
    """A link's connection came up or went down (for the tree's status)."""

    connected: bool
    detail: str
    since: float  # wall clock


@attrs.frozen
class CommandReceived:
    """A command from the service (protocol/commands.py), to act on; the command link
    acknowledges it once told (AckCommand)."""

    generation: str
    delivery_tag: int
    command: object


@attrs.frozen
class AckCommand:
    generation: str
    delivery_tag: int


@attrs.frozen
class PublishFailureNotice:
    """A user endpoint could not start: tell the service, as that user endpoint (``target``
    holds its own credentials), so that its waiting tasks fail with the reason."""

    target: PublishTarget
    packed: bytes  # a packed EPStatusReport with the error


@attrs.frozen
class TaskEvent:
    """One step of a task's life, for a multi-user endpoint's audit log: RECEIVED, RUNNING,
    EXEC_END (a result made) or FAILED, as the official names them."""

    task_id: str
    function_id: str
    action: str
    detail: str = ""


@attrs.frozen
class TaskEvents:
    """A user endpoint's supervisor -> its manager (to PARENT): task events to audit. The
    manager stamps them with who sent them; nothing in here says who."""

    events: tuple[TaskEvent, ...]
