"""Checks a start makes before it spawns anything, each failing with what to do: the broker
the service hands out answers, an engine's named address resolves, and a multi-user
endpoint runs as root with an identity mapping that loads."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from .directory import EndpointDirectory
from .errors import LifecycleError
from .exit_codes import Exit

Echo = Callable[[str], None]

BROKER_CHECK_TIMEOUT_S = 5


def check_broker(url: str, queue: str, amqp_port: int | None = None, echo: Echo = lambda _: None) -> None:
    from ..broker.connection import broker_connection, explain_tls_error
    from ..protocol.urls import embedded_folder, is_embedded, redact_url

    echo(f"Checking the broker at {redact_url(url)} ...")
    if is_embedded(url) and not Path(embedded_folder(url)).is_dir():
        raise LifecycleError(f"The service hands out the embedded broker in {embedded_folder(url)}, which is not "
                             "on this machine: run the endpoint where the service runs, or serve with RabbitMQ.",
                             exit_code=Exit.UNAVAILABLE)
    try:
        with broker_connection(url, connect_timeout=BROKER_CHECK_TIMEOUT_S) as connection:
            connection.connect()  # one attempt: a broker that does not answer now is reported now
            connection.channel().queue_declare(queue=queue, passive=True)
    except Exception as exc:
        tls_problem = explain_tls_error(exc, url)
        if tls_problem:
            raise LifecycleError(f"Refusing the broker at {redact_url(url)}: {tls_problem}. The endpoint never "
                                 "talks to a broker it cannot verify.", exit_code=Exit.UNAVAILABLE) from None
        port_hint = (f" config.yaml sets amqp_port: {amqp_port}, which replaces the port the service hands out; "
                     "a local compute-service's RabbitMQ listens on 5672: remove amqp_port (or set 5672)."
                     if amqp_port is not None else " Check that it runs and that this host can reach it.")
        raise LifecycleError(f"Cannot use the broker at {redact_url(url)} ({exc}).{port_hint}",
                             exit_code=Exit.UNAVAILABLE) from None


def check_engine_address(config, directory: EndpointDirectory) -> None:
    """A named address (an interface, a finder) must resolve before anything starts."""
    address = getattr(config.engine, "address", None)
    if not isinstance(address, dict):
        return
    from ..workers.addresses import AddressError, resolve_address

    try:
        resolve_address(address)
    except AddressError as exc:
        raise LifecycleError(f"Invalid endpoint configuration in {directory.config_file}:\n  engine.{exc}",
                             exit_code=Exit.CONFIG) from None


def check_multi_user(directory: EndpointDirectory, mapping: Path) -> None:
    """A multi-user endpoint runs as root, from an installation its users can read, with an
    identity mapping (checked as trusted already) that loads."""
    from .identity_map import IdentityMap

    if os.geteuid() != 0:
        raise LifecycleError(
            f"Endpoint {directory.name} is a multi-user endpoint (multi_user or identity_mapping_config_path in "
            f"{directory.config_file}): it runs as root, to start each identity's user endpoint as the local user "
            "the mapping names. Start it as root, or remove those keys for an endpoint that runs as you.",
            exit_code=Exit.NO_PERMISSION)
    package = Path(__file__).resolve().parent.parent  # compute_endpoint/, a namespace package
    for needed in (Path(sys.executable).resolve(), Path(sys.base_prefix) / "lib", package):
        closed = closed_to_others(needed)
        if closed is not None:
            raise LifecycleError(
                f"The users' endpoints could not run: {closed} is closed to other users, and the Python or "
                f"compute-endpoint this endpoint runs from is in it ({needed}). Install compute-endpoint where "
                "every user can read it (a virtual environment under /opt, made from the system's Python), "
                "and start the endpoint from there.", exit_code=Exit.CONFIG)
    try:
        IdentityMap(mapping, "")
    except Exception as exc:  # noqa: BLE001 - the library's errors, JSON's, the file's: all the same to the user
        raise LifecycleError(f"Cannot use the identity mapping {mapping}: {exc}", exit_code=Exit.CONFIG) from None


def closed_to_others(path: Path) -> Path | None:
    """The first directory on the way to path that users other than its owner cannot enter
    (or path itself, when they cannot read it); None when all of it is open to them."""
    for step in (*reversed(path.parents), path):
        try:
            mode = step.stat().st_mode
        except OSError:
            return step
        if step.is_dir() and not mode & 0o001 or not step.is_dir() and not mode & 0o004:
            return step
    return None
