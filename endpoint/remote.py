"""What the CLI asks of the Compute service about an endpoint, wherever it runs: stop it
(``stop --remote``) and forget it (``delete``)."""

from __future__ import annotations

import shutil
import uuid

from .auth import AuthError
from .config import ConfigError
from .directory import EndpointDirectory
from .exit_codes import Exit
from .lifecycle import Echo, LifecycleError, credentials_for, stop
from .service_client import ServiceClient, ServiceError
from .status import EndpointState, endpoint_status


def client_for(directory: EndpointDirectory) -> ServiceClient:
    """A client of the service this endpoint registers with, as the identity logged in for it."""
    credentials = credentials_for(directory)
    return ServiceClient(credentials.service_url, credentials.compute_token())


def stop_remotely(directory: EndpointDirectory, echo: Echo) -> None:
    """Ask the service to stop the endpoint wherever it runs: it tells the running endpoint
    over AMQP, and refuses its registration for a while."""
    endpoint_id = _registered_id(directory)
    try:
        client = client_for(directory)
        client.lock_endpoint(str(endpoint_id))
    except (ServiceError, AuthError) as exc:
        raise LifecycleError(f"Could not ask the Compute service to stop endpoint {endpoint_id}: {exc}",
                             exc.exit_code) from None
    echo(f"Asked the Compute service at {client.service_url} to stop endpoint {endpoint_id} wherever it runs")


def delete_endpoint(directory: EndpointDirectory, echo: Echo, force: bool) -> None:
    """Stop the endpoint if it runs here, delete it from the service, then delete its
    directory. Without force, a service that cannot delete it keeps the directory too."""
    if endpoint_status(directory).state is EndpointState.RUNNING:
        stop(directory, echo)
    endpoint_id = directory.read_endpoint_id()
    if endpoint_id is None:
        echo(f"Endpoint {directory.name} was never registered: nothing to delete at the Compute service")
    else:
        try:
            delete_registration(client_for(directory), endpoint_id, echo)
        except (ServiceError, AuthError, ConfigError) as exc:
            if not force:
                raise LifecycleError(
                    f"Could not delete endpoint {endpoint_id} from the Compute service: {exc}\nThe directory "
                    f"{directory.path} is kept; try again when the service answers, or pass --force to delete "
                    "it anyway.", getattr(exc, "exit_code", Exit.CONFIG)) from None
            echo(f"Warning: could not delete endpoint {endpoint_id} from the Compute service ({exc}); deleting "
                 f"the local directory anyway (--force). The service still knows the endpoint: delete it there "
                 f"with `globus-compute-endpoint delete {endpoint_id}` once it answers.")
    shutil.rmtree(directory.path)
    echo(f"Endpoint {directory.name} deleted; its directory {directory.path} is gone")


def delete_registration(client: ServiceClient, endpoint_id: uuid.UUID, echo: Echo) -> None:
    try:
        client.delete_endpoint(str(endpoint_id))
    except ServiceError as exc:
        if exc.status != 404:
            raise
        echo(f"The Compute service at {client.service_url} does not know endpoint {endpoint_id} (deleted "
             "already, or registered by another identity)")
        return
    echo(f"Endpoint {endpoint_id} deleted from the Compute service at {client.service_url}")


def _registered_id(directory: EndpointDirectory) -> uuid.UUID:
    endpoint_id = directory.read_endpoint_id()
    if endpoint_id is None:
        raise LifecycleError(f"Endpoint {directory.name} has never been registered (it has no endpoint.json): "
                             "the Compute service knows nothing of it to stop.", Exit.FAILED)
    return endpoint_id
