"""Registering the endpoint with the Compute service (POST, or PUT with the known id)."""

from __future__ import annotations

import getpass
import platform
import socket
import uuid
from typing import Any

import requests

from .errors import EndpointError
from .exit_codes import Exit
from .version import __version__

TIMEOUT_S = 30


class RegistrationError(EndpointError):
    """Registration failed; str() says why and what to do. ``exit_code`` follows sysexits."""


def register(service_url: str, token: str, name: str, endpoint_id: uuid.UUID | None,
             display_name: str | None, config_text: str, fields: dict[str, Any] | None = None,
             metadata: dict[str, Any] | None = None) -> dict:
    """Register; ``fields`` are the config's registration fields (allowed_functions, public...),
    ``metadata`` what else the service is told (a template-capable endpoint's template)."""
    body: dict[str, Any] = {**(fields or {}), "endpoint_name": name, "metadata": {
        "endpoint_version": __version__, "python_version": platform.python_version(),
        "hostname": socket.getfqdn(), "local_user": getpass.getuser(), "endpoint_config": config_text,
        **(metadata or {})}}
    if display_name:
        body["display_name"] = display_name
    headers = {"Authorization": f"Bearer {token}", "User-Agent": f"compute-endpoint/{__version__}"}
    try:
        if endpoint_id is None:
            response = requests.post(f"{service_url}/v3/endpoints", json=body, headers=headers, timeout=TIMEOUT_S)
        else:
            response = requests.put(f"{service_url}/v3/endpoints/{endpoint_id}", json=body, headers=headers,
                                    timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        raise RegistrationError(f"cannot reach the Compute service at {service_url}: {exc}", Exit.TRY_AGAIN) from None
    if response.status_code == 401:
        raise RegistrationError(f"the Compute service at {service_url} did not accept the stored token; "
                                "log in again: globus-compute-endpoint login", Exit.NO_PERMISSION)
    if response.status_code == 404 and endpoint_id is not None:
        raise RegistrationError(
            f"the Compute service at {service_url} knows no endpoint {endpoint_id} that the identity logged in "
            "now may register: it belongs to another identity, or was deleted by it. Log in as the identity "
            "that registered it, or configure a new endpoint.", Exit.NO_PERMISSION)
    if response.status_code >= 400:
        try:
            detail = response.json().get("error") or response.text
        except ValueError:
            detail = response.text[:500]
        code = {403: Exit.NO_PERMISSION, 400: Exit.BAD_REQUEST, 422: Exit.BAD_REQUEST}.get(response.status_code,
                                                                                          Exit.UNAVAILABLE)
        raise RegistrationError(f"the Compute service refused the registration "
                                f"({response.status_code}): {detail}", code)
    try:
        info = response.json()
        for key in ("endpoint_id", "task_queue_info", "result_queue_info", "heartbeat_queue_info"):
            info[key]  # noqa: B018 - presence check
    except (ValueError, KeyError, TypeError) as exc:
        raise RegistrationError(f"the Compute service answered the registration without {exc}", Exit.PROTOCOL) from None
    if endpoint_id is not None and str(info["endpoint_id"]) != str(endpoint_id):
        raise RegistrationError(f"the service registered id {info['endpoint_id']}, not the requested "
                                f"{endpoint_id}", Exit.SOFTWARE)
    return info
