"""What both links share: the BrokerLink, a ReconnectingClient that answers the supervisor
while it waits, and the body of a link process's main."""

from __future__ import annotations

import logging
import signal
import time
from typing import Protocol

import amqp.exceptions
import kombu

from ..broker.reconnecting import FatalBrokerError, ReconnectingClient
from ..protocol import commands
from ..protocol.urls import redact_url
from ..supervisor.pipe import ParentPipe
from ..supervisor.spec import ExitCode
from .pipe_messages import BrokerState
from .startup import ChildSettings, begin_child

log = logging.getLogger(__name__)

__all__ = ["BrokerLink", "FatalBrokerError", "channel_on_queue", "drain", "read_command", "run_link"]


def drain(connection: kombu.Connection, timeout: float) -> bool:
    """Process broker frames for up to timeout; False when nothing arrived."""
    try:
        connection.drain_events(timeout=timeout)
        return True
    except TimeoutError:
        return False


def channel_on_queue(connection: kombu.Connection, queue: str, what: str):
    """A new channel, once the queue is known to exist (passively: endpoints create nothing);
    a missing queue is a FatalBrokerError, as retrying cannot create it."""
    channel = connection.channel()
    try:
        channel.queue_declare(queue=queue, passive=True)
    except amqp.exceptions.NotFound:
        raise FatalBrokerError(f"the {what} {queue} does not exist at {redact_url(connection.as_uri())}; "
                               "is the endpoint registered with this service?") from None
    return channel


def read_command(channel, message) -> commands.Command | None:
    """A command from the service's command queue (protocol/commands.py); None when refused:
    then rejected to the dead letter and logged, and the next one is read as usual."""
    properties = dict(getattr(message, "properties", None) or {})
    properties.setdefault("content_type", getattr(message, "content_type", None))  # kombu's own messages
    command = commands.read(message.body, properties)
    if isinstance(command, commands.Refused):
        log.warning("refused a message on the command queue: %s", command.reason)
        channel.basic_reject(message.delivery_tag, requeue=False)
        return None
    return command


class LinkSettings(ChildSettings, Protocol):
    @property
    def broker_silence_s(self) -> float: ...


class BrokerLink(ReconnectingClient):
    """A link process's life with the broker (connect, one session, reconnect: see
    ReconnectingClient), answering the supervisor while it waits to connect again. A link
    says who it is (``role``), where it connects (``url``), what a session does
    (``session``) and how it answers the supervisor (``handle``)."""

    role = "link"
    # Connect again when asked to stop while disconnected? (to publish what is left)
    reconnect_while_stopping = False

    def __init__(self, parent: ParentPipe, settings: LinkSettings):
        self.parent = parent  # the pipe to the supervisor
        self.settings = settings
        self.stopping: str | None = None
        self.amqp_heartbeat_s = settings.broker_silence_s / 2

    def stop(self, reason: str) -> None:
        self.stopping = self.stopping or reason

    def handle(self, message: object) -> bool:
        """Act on a supervisor message; False when it is time to stop."""
        raise NotImplementedError

    def wanted(self) -> bool:
        return self.reconnect_while_stopping or not self.stopping

    def broker_state(self, connected: bool, detail: str) -> None:
        self.parent.send(BrokerState(connected, detail, time.time()))

    def pause(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for message in self.parent.receive(timeout=min(0.2, left)):
                if not self.handle(message):
                    return False
        return True


def run_link(link_class: type[BrokerLink], parent: ParentPipe, settings: LinkSettings) -> int:
    """The body of a link process's main: title and logging first, then the link's loop.

    A broker that refuses the credentials cannot be fixed by restarting: the link says so
    (Halt, CONFIG_ERROR), which stops the tree with the reason in the log.
    """
    role = link_class.role
    begin_child(settings, role)
    link = link_class(parent, settings)
    signal.signal(signal.SIGTERM, lambda *_: link.stop("SIGTERM"))
    parent.ready()
    try:
        link.run()
    except FatalBrokerError as exc:
        log.error("%s cannot continue: %s", role, exc)
        return parent.halt(ExitCode.CONFIG_ERROR, str(exc))
    log.info("%s stopped (%s)", role, link.stopping)
    return 0
