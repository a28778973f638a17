"""The task link process: consumes the endpoint's task queue and hands tasks on in batches.

It never acknowledges a task on its own: only when the supervisor says the task's
result was confirmed by the broker (AckDeliveries). Should this process or its
connection die, the broker gives the unacknowledged tasks to the next consumer.
"""

from __future__ import annotations

import collections
import logging
import os
from pathlib import Path
from typing import Any

import amqp

from ..protocol import commands, messages
from ..supervisor.control import Stop
from ..supervisor.pipe import ParentPipe
from .broker_link import BrokerLink, channel_on_queue, drain, read_command, run_link
from .memory import release_freed_memory
from .payloads import TASK_BODIES, Payload, PayloadStore, Stored, size_of
from .pipe_messages import AckDeliveries, PauseConsuming, StopRequested, TaskDelivery, TasksReceived
from .settings import WorkerSettings

log = logging.getLogger(__name__)

BATCH = 256
DEFAULT_PREFETCH = 1024  # only when the settings give none (the tree sizes it from the engine)
MAX_TASK_BYTES = messages.MAX_MESSAGE_BYTES
DEFAULT_BYTES_BUDGET = 256 * 1024 * 1024
# Consuming resumes once the bodies held fall to this share of the budget: a fresh consumer
# each time a few results come back would cost a round trip per few tasks.
RESUME_AT = 0.75


def main(parent: ParentPipe, settings: WorkerSettings) -> int:
    return run_link(TaskLink, parent, settings)


class TaskLink(BrokerLink):
    """Takes the endpoint's tasks from the broker and hands them to the supervisor.

    Two bounds keep what the tree holds in check: a count (the prefetch) and bytes (the
    budget). A task body counts against the budget from its delivery until its
    acknowledgement; when the next one would not fit, it goes back to the queue, in its
    place, and the consumer is cancelled until results have freed a quarter of the
    budget. A body larger than a few tens of KiB is written once to a file (payloads.py)
    that the rest of the tree refers to, and removed when the task is acknowledged.
    """

    role = "task link"
    settings: WorkerSettings

    def __init__(self, parent: ParentPipe, settings: WorkerSettings):
        super().__init__(parent, settings)
        self.prefetch = settings.prefetch or DEFAULT_PREFETCH
        self.budget = settings.max_task_bytes_in_flight or DEFAULT_BYTES_BUDGET
        self.bodies = PayloadStore(Path(settings.run_dir) / TASK_BODIES)
        self.paused = False  # the tree is stopping: no new tasks
        self.full = False  # the budget is spent: no new tasks until results free some
        self.connections = 0
        self.consumers = 0
        self.generation = ""
        self.channel: Any = None  # the consuming channel (py-amqp's or kombu's); None while (re)connecting
        self.consumer_tag: str | None = None
        self.batch: list[TaskDelivery] = []
        self.acks = AckWindow()
        self.held: dict[int, tuple[str, int, bool]] = {}  # delivery tag -> (task id, bytes, in a file)
        self.held_bytes = 0
        self.typical_size: float | None = None  # of recent bodies, to size the prefetch on resuming
        self.requeued = 0

    @property
    def url(self) -> str:
        return self.settings.task_queue_url

    def disconnected(self) -> None:
        # Tags of this channel die with it: acks for them are dropped from now on. The
        # broker delivers those tasks again, and they count against the budget again.
        self.channel, self.generation, self.batch, self.acks = None, "", [], AckWindow()
        self.consumer_tag, self.held, self.held_bytes, self.full = None, {}, 0, False

    def session(self, connection) -> None:
        self.connections += 1
        # Delivery tags belong to one channel: the generation tells this channel's
        # tags from those of a channel (or a process) that is gone.
        self.generation = f"{os.getpid()}.{self.connections}"
        channel = channel_on_queue(connection, self.settings.task_queue, "task queue")
        self.channel = channel
        self._start_consuming()
        self._consume_commands(connection)
        while not self.stopping:
            if drain(connection, 0.02):
                # Not past a full budget: the consumer must be cancelled first, or the broker
                # hands the deliveries given back straight back to it.
                while len(self.batch) < BATCH and not self.full and drain(connection, 0.0005):
                    pass
            self._forward()
            for message in self.parent.receive(0):
                if not self.handle(message):
                    break
            self._regulate()
            connection.heartbeat_check()

    def _consume_commands(self, connection) -> None:
        """Commands from the service come on a queue and a channel of their own: no task
        backlog delays them, and the task channel's multiple acks never cover them."""
        queue = self.settings.command_queue
        if not queue:
            return  # a service that sends no commands
        channel = connection.channel()
        try:
            channel.queue_declare(queue=queue, passive=True)
        except amqp.exceptions.NotFound:
            log.warning("the command queue %s does not exist: stop --remote cannot reach this endpoint", queue)
            return
        channel.basic_consume(queue=queue, callback=lambda message: self._on_command(channel, message),
                              no_ack=False, consumer_tag=f"commands-{self.generation}")

    def _on_command(self, channel, message) -> None:
        command = read_command(channel, message)
        if command is None:
            return
        channel.basic_ack(message.delivery_tag)  # acted on below, at once: the supervisor stops the tree
        if isinstance(command, commands.StopEndpoint):
            log.info("the Compute service asks this endpoint to stop (%s)", command.reason)
            self.parent.send(StopRequested(command.reason))
        else:  # a start: for template-capable endpoints (command_link.py), not this one
            log.warning("ignored a %s command: this endpoint is not template-capable", type(command).__name__)

    def _start_consuming(self) -> None:
        prefetch = self._prefetch_now()
        self.channel.basic_qos(0, prefetch, False)  # applies to the consumer started next
        self.consumers += 1
        self.consumer_tag = f"task-link-{self.generation}-{self.consumers}"
        self.channel.basic_consume(queue=self.settings.task_queue, callback=self._on_delivery, no_ack=False,
                                   consumer_tag=self.consumer_tag, exclusive=True)
        level = logging.INFO if self.consumers == 1 else logging.DEBUG
        log.log(level, "task link consuming %s (prefetch %d, budget %s of task bodies)",
                self.settings.task_queue, prefetch, _mib(self.budget))

    def _prefetch_now(self) -> int:
        """The configured prefetch, or fewer when that many bodies of the size seen lately
        would not fit in what is left of the budget (the rest would only come back)."""
        if not self.typical_size:
            return self.prefetch
        room = max(0, self.budget - self.held_bytes)
        return max(1, min(self.prefetch, int(room / self.typical_size)))

    def _regulate(self) -> None:
        """Stop consuming when the tree stops or the budget is spent; resume when there is room."""
        if self.consumer_tag is not None and (self.paused or self.full):
            self.channel.basic_cancel(self.consumer_tag)
            self.consumer_tag = None
            if self.full:
                log.debug("task link holds %s of task bodies (budget %s): waiting for results to free some",
                          _mib(self.held_bytes), _mib(self.budget))
        elif (self.consumer_tag is None and not self.paused and self.channel is not None
              and self.held_bytes <= RESUME_AT * self.budget):
            self.full = False
            self._start_consuming()

    def _on_delivery(self, message) -> None:
        # py-amqp's and kombu's virtual messages share these attributes.
        headers = message.headers if isinstance(message.headers, dict) else {}
        tag = message.delivery_tag
        task_id = messages.canonical_uuid(headers.get("task_uuid"))
        if task_id is None:
            # No usable id: there is nothing to answer to. Reject without requeue
            # (dead-lettered where the queue has a dead-letter exchange), log it once.
            log.warning("rejecting a task message whose task_uuid header is %r (headers: %s)",
                        headers.get("task_uuid"), sorted(headers)[:10])
            self.channel.basic_reject(tag, requeue=False)
            return
        body = bytes(message.body)
        if self.held_bytes and self.held_bytes + len(body) > self.budget:
            # No room: back to the queue, in its place, until results free some.
            self.channel.basic_reject(tag, requeue=True)
            self.full = True
            self.requeued += 1
            return
        problem = None
        if len(body) > MAX_TASK_BYTES:
            problem = f"The task message of {len(body)} bytes exceeds the {MAX_TASK_BYTES} byte limit"
            payload: Payload = b""
        else:
            payload = self.bodies.keep(task_id, body)
        del body, message  # the file has it now, or the delivery below
        size = size_of(payload)
        self.held[tag] = (task_id, size, isinstance(payload, Stored))
        self.held_bytes += size
        self.typical_size = size if self.typical_size is None else 0.9 * self.typical_size + 0.1 * size
        if self.held_bytes + self.typical_size > self.budget:
            self.full = True  # the next one would not fit either: stop the flow now, not after it
        self.acks.delivered(tag)
        self.batch.append(TaskDelivery(task_id=task_id, delivery_tag=tag, generation=self.generation,
                                       headers=headers, body=payload, problem=problem))

    def _forward(self) -> None:
        if self.batch:
            self.parent.send(TasksReceived(tuple(self.batch)))
            self.batch = []

    def _acknowledge(self, tags) -> None:
        for tag in tags:
            held = self.held.pop(tag, None)
            if held is not None:
                task_id, size, in_file = held
                self.held_bytes -= size
                if in_file:
                    self.bodies.discard(task_id)
        upto, singles = self.acks.settle(tags)
        if upto is not None:
            self.channel.basic_ack(upto, multiple=True)
        for tag in singles:
            self.channel.basic_ack(tag)
        if not self.held and self.requeued:
            log.info("task link: the backlog of large tasks drained (%d deliveries waited in the queue "
                     "for room in the %s budget)", self.requeued, _mib(self.budget))
            self.requeued = 0
            release_freed_memory()

    def handle(self, message: object) -> bool:
        if isinstance(message, AckDeliveries):
            if self.channel is not None and message.generation == self.generation:
                self._acknowledge(message.delivery_tags)
        elif isinstance(message, PauseConsuming):
            self.paused = True
        elif isinstance(message, Stop):
            self.stop(message.reason or "asked to stop")
            return False
        return True


def _mib(size: float) -> str:
    return f"{size / 2**20:,.0f} MiB"


class AckWindow:
    """Acknowledges in few frames: settled tags at the front of the delivery order go in one
    ``multiple`` ack; tags settled behind a task still running wait for it, unless too many
    wait, then they go one by one (each ack is a frame and a write: thousands a second)."""

    MAX_WAITING = 256

    def __init__(self) -> None:
        self.order: collections.deque[int] = collections.deque()  # delivered, in delivery order
        self.settled: set[int] = set()  # may be acked, not yet
        self.gone: set[int] = set()  # acked one by one already

    def delivered(self, tag: int) -> None:
        self.order.append(tag)

    def settle(self, tags) -> tuple[int | None, list[int]]:
        """(highest tag to ack with multiple=True, or None; tags to ack one by one)."""
        self.settled.update(tags)
        upto = None
        while self.order and (self.order[0] in self.settled or self.order[0] in self.gone):
            tag = self.order.popleft()
            if tag in self.settled:
                self.settled.discard(tag)
                upto = tag  # every outstanding tag up to here is settled
            else:
                self.gone.discard(tag)
        singles = []
        if len(self.settled) > self.MAX_WAITING:
            singles = sorted(self.settled)
            self.gone.update(singles)
            self.settled.clear()
        return upto, singles
