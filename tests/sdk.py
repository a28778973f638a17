"""The official SDK's Client, aimed at a service the test started on a port of its own.

The SDK reaches a local service only at http://localhost:5000 (its `local` environment), so
tests that went through it took turns on that port, one after another: the longest chain of
the suite. Here the Client is made as a user makes it for a local service and then aimed at
the test's service; what it sends and receives (submits, the AMQP result URL, the Executor's
result queue) is still all the SDK's own. The tests that show the user's own path (the demo,
the example scripts, the official endpoint, which finds the service the same way) stay on
port 5000 (the sdk_port fixture)."""

from __future__ import annotations

import globus_sdk
from globus_compute_sdk import Client
from globus_compute_sdk.sdk.client import _ComputeWebClient


def sdk_client(service_url: str, token: str, *, version_check: bool = True, **options) -> Client:
    authorizer = globus_sdk.AccessTokenAuthorizer(token)
    client = Client(local_compute_services=True, authorizer=authorizer, do_version_check=False, **options)
    client.web_service_address = service_url
    client._compute_web_client = _ComputeWebClient(base_url=service_url, authorizer=authorizer)
    if version_check:
        client.version_check()
    return client
