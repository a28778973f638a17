"""What both links share: their process's start, connecting to the broker with jittered
backoff while staying responsive to the supervisor, and telling fatal broker errors
from passing ones."""

from __future__ import annotations

import logging
import random
import signal
import time
from collections.abc import Callable

import amqp.exceptions
import kombu
from setproctitle import setproctitle

from ..protocol.urls import broker_connection, explain_tls_error, redact_url
from ..supervisor.channel import ParentChannel
from ..supervisor.spec import ExitCode
from .logs import setup_logging
from .settings import WorkerSettings

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0
AMQP_HEARTBEAT_S = 60


class FatalBrokerError(Exception):
    """Retrying cannot help (wrong credentials, no permission); str() says what to fix."""


def drain(connection: kombu.Connection, timeout: float) -> bool:
    """Process broker frames for up to timeout; False when nothing arrived."""
    try:
        connection.drain_events(timeout=timeout)
        return True
    except TimeoutError:
        return False


def connect(url: str, what: str, channel: ParentChannel,
            on_message: Callable[[object], bool]) -> kombu.Connection | None:
    """Connect with jittered exponential backoff, answering the supervisor meanwhile.

    ``on_message`` sees each supervisor message that arrives while waiting and returns
    False to give up (a Stop). Returns None when it gave up.
    """
    delay = BACKOFF_START_S
    attempt = 0
    while True:
        attempt += 1
        connection = broker_connection(url, heartbeat=AMQP_HEARTBEAT_S, connect_timeout=10)
        try:
            connection.connect()
            if attempt > 1:
                log.info("%s connected to %s after %d attempts", what, redact_url(url), attempt)
            return connection
        except amqp.exceptions.AccessRefused as exc:
            connection.release()
            raise FatalBrokerError(f"the broker at {redact_url(url)} refused the credentials: {exc}") from None
        except Exception as exc:
            connection.release()
            tls_problem = explain_tls_error(exc, url)
            if tls_problem:  # retrying cannot make a certificate valid: stop with the reason
                raise FatalBrokerError(tls_problem) from None
            level = logging.WARNING if attempt in (1, 5) or attempt % 30 == 0 else logging.DEBUG
            log.log(level, "%s cannot reach %s (attempt %d: %s); retrying in %.1f s", what, redact_url(url),
                    attempt, exc, delay)
        deadline = time.monotonic() + delay * random.uniform(0.5, 1.0)
        while time.monotonic() < deadline:
            for message in channel.receive(timeout=min(0.2, max(0.0, deadline - time.monotonic()))):
                if not on_message(message):
                    return None
        delay = min(delay * 2, BACKOFF_MAX_S)


def is_connection_error(exc: BaseException) -> bool:
    """Errors after which a new connection may succeed."""
    return isinstance(exc, (OSError, ConnectionError, amqp.exceptions.ConnectionError,
                            amqp.exceptions.RecoverableConnectionError, amqp.exceptions.ChannelError,
                            kombu.exceptions.OperationalError))


def run_link(role: str, make_link: Callable, channel: ParentChannel, settings: WorkerSettings) -> int:
    """The body of a link process's main: title and logging first, then the link's loop.

    A broker that refuses the credentials cannot be fixed by restarting: that exits
    with CONFIG_ERROR, which stops the tree with the reason in the log.
    """
    setproctitle(settings.role_title(role))
    setup_logging(settings.log_file, role.replace(" ", "-"), settings.debug)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C reaches the whole group; the supervisor decides
    link = make_link(channel, settings)
    signal.signal(signal.SIGTERM, lambda *_: link.stop("SIGTERM"))
    channel.ready()
    try:
        return link.run()
    except FatalBrokerError as exc:
        log.error("%s cannot continue: %s", role, exc)
        return ExitCode.CONFIG_ERROR
