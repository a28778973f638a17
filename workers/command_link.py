"""The command link: the one link of a template-capable endpoint's own tree. It takes the
service's commands from the endpoint's command queue (start a user endpoint, stop) and hands
each to the supervisor, acknowledging it to the broker only once the supervisor has acted on
it: a command link killed in between leaves the command to the next one. It also publishes
the endpoint's own status reports.

Commands older than the official's limit, not JSON, unknown or malformed are rejected to the
dead letter and logged (protocol/commands.py); they never stop the others.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..broker.connection import broker_connection
from ..supervisor.control import Stop
from ..supervisor.pipe import ParentPipe
from .broker_link import BrokerLink, channel_on_queue, drain, read_command, run_link
from .pipe_messages import AckCommand, CommandReceived, PublishFailureNotice, PublishStatus
from .settings import ManagerSettings

log = logging.getLogger(__name__)

# Commands are few, but a start waiting its turn (max_user_endpoints) stays unacknowledged
# until it is carried out, so that it outlives the endpoint; a stop must still get through.
PREFETCH = 64


def main(parent: ParentPipe, settings: ManagerSettings) -> int:
    return run_link(CommandLink, parent, settings)


class CommandLink(BrokerLink):
    role = "command link"
    settings: ManagerSettings

    def __init__(self, parent: ParentPipe, settings: ManagerSettings):
        super().__init__(parent, settings)
        self.channel: Any = None  # the consuming channel; None while (re)connecting
        self.generation = ""
        self.connections = 0

    @property
    def url(self) -> str:
        return self.settings.command_url

    def disconnected(self) -> None:
        self.channel, self.generation = None, ""  # its delivery tags die with it

    def session(self, connection) -> None:
        self.connections += 1
        self.generation = f"{os.getpid()}.{self.connections}"
        channel = channel_on_queue(connection, self.settings.command_queue, "command queue")
        channel.basic_qos(0, PREFETCH, False)
        channel.basic_consume(queue=self.settings.command_queue, callback=self._on_command, no_ack=False,
                              consumer_tag=f"command-link-{self.generation}")
        self.channel = channel
        log.info("command link consuming %s", self.settings.command_queue)
        while not self.stopping:
            drain(connection, 0.05)
            for message in self.parent.receive(0):
                if not self.handle(message):
                    break
            connection.heartbeat_check()

    def _on_command(self, message) -> None:
        command = read_command(self.channel, message)
        if command is not None:
            self.parent.send(CommandReceived(self.generation, message.delivery_tag, command))

    def handle(self, message: object) -> bool:
        if isinstance(message, AckCommand):
            if self.channel is not None and message.generation == self.generation:
                self.channel.basic_ack(message.delivery_tag)
        elif isinstance(message, PublishStatus):
            self._publish_status(message.packed)
        elif isinstance(message, PublishFailureNotice):
            self._publish_failure(message)
        elif isinstance(message, Stop):
            self.stop(message.reason or "asked to stop")
            return False
        return True

    def _publish_failure(self, notice: PublishFailureNotice) -> None:
        """With the user endpoint's own credentials, on a connection of its own: the broker
        lets each endpoint speak only for itself."""
        target = notice.target
        try:
            with broker_connection(target.connection_url, connect_timeout=10) as connection:
                channel = connection.channel()
                channel.basic_publish(channel.prepare_message(notice.packed, properties=dict(target.properties)),
                                      exchange=target.exchange, routing_key=target.routing_key,
                                      mandatory=target.mandatory)
        except Exception as exc:  # the service then just sees the user endpoint never come up
            log.warning("could not tell the service that a user endpoint failed to start: %s", exc)

    def _publish_status(self, packed: bytes) -> None:
        if self.channel is None:
            return  # the next report comes a period later; a manager's are only "I am here"
        target = self.settings.heartbeats
        self.channel.basic_publish(self.channel.prepare_message(packed, properties=dict(target.properties)),
                                   exchange=target.exchange, routing_key=target.routing_key,
                                   mandatory=target.mandatory)
