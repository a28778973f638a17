"""The one HTTP client of the Compute service's endpoint routes the CLI calls: register (POST,
or PUT with the known id), status, lock (a remote stop), delete. Each failure is a
ServiceError that says what happened and carries the exit code (sysexits)."""

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
REGISTRATION_KEYS = ("endpoint_id", "task_queue_info", "result_queue_info", "heartbeat_queue_info")


class ServiceError(EndpointError):
    """A call to the service failed; str() says why. ``unreachable``: no answer at all."""

    def __init__(self, message: str, exit_code: int, unreachable: bool = False, status: int | None = None):
        super().__init__(message, exit_code)
        self.unreachable = unreachable
        self.status = status  # the HTTP status, when the service answered

    def __reduce__(self):  # crosses the throwaway process's pipe, as its base does
        return type(self), (str(self), self.exit_code, self.unreachable, self.status)


class ServiceClient:
    def __init__(self, service_url: str, token: str):
        self.service_url = service_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": f"compute-endpoint/{__version__}"}

    def register(self, name: str, endpoint_id: uuid.UUID | None, display_name: str | None, config_text: str,
                 fields: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None) -> dict:
        """Register; ``fields`` are the config's registration fields (allowed_functions, public...),
        ``metadata`` what else the service is told (a template-capable endpoint's template)."""
        body: dict[str, Any] = {**(fields or {}), "endpoint_name": name, "metadata": {
            "endpoint_version": __version__, "python_version": platform.python_version(),
            "hostname": socket.getfqdn(), "local_user": getpass.getuser(), "endpoint_config": config_text,
            **(metadata or {})}}
        if display_name:
            body["display_name"] = display_name
        try:
            if endpoint_id is None:
                info = self._call("post", "/v3/endpoints", body, action="the registration")
            else:
                info = self._call("put", f"/v3/endpoints/{endpoint_id}", body, action="the registration")
        except ServiceError as exc:
            if exc.status == 404 and endpoint_id is not None:
                raise ServiceError(
                    f"the Compute service at {self.service_url} knows no endpoint {endpoint_id} that the identity "
                    "logged in now may register: it belongs to another identity, or was deleted by it. Log in as "
                    "the identity that registered it, or configure a new endpoint.", Exit.NO_PERMISSION,
                    status=404) from None
            raise
        try:
            for key in REGISTRATION_KEYS:
                info[key]  # noqa: B018 - presence check
        except (KeyError, TypeError) as exc:
            raise ServiceError(f"the Compute service answered the registration without {exc}", Exit.PROTOCOL) from None
        if endpoint_id is not None and str(info["endpoint_id"]) != str(endpoint_id):
            raise ServiceError(f"the service registered id {info['endpoint_id']}, not the requested "
                               f"{endpoint_id}", Exit.SOFTWARE)
        return info

    def endpoint_status(self, endpoint_id: str) -> dict:
        return self._call("get", f"/v2/endpoints/{endpoint_id}/status")

    def lock_endpoint(self, endpoint_id: str) -> dict:
        """Stop the endpoint wherever it runs: the service tells it, and refuses its
        registration for a while."""
        return self._call("post", f"/v3/endpoints/{endpoint_id}/lock")

    def delete_endpoint(self, endpoint_id: str) -> dict:
        return self._call("delete", f"/v2/endpoints/{endpoint_id}")

    def _call(self, method: str, path: str, body: Any = None, action: str | None = None) -> Any:
        """The answer's JSON. ``action``: what the call is, named in a refusal ("the registration")."""
        try:
            response = requests.request(method, self.service_url + path, json=body, headers=self._headers,
                                        timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            raise ServiceError(f"cannot reach the Compute service at {self.service_url}: {exc}",
                               Exit.TRY_AGAIN, unreachable=True) from None
        status = response.status_code
        if status == 401:
            raise ServiceError(f"the Compute service at {self.service_url} did not accept the stored token; "
                               "log in again: globus-compute-endpoint login --force", Exit.NO_PERMISSION, status=401)
        if status >= 400:
            try:
                detail = response.json().get("error") or response.text
            except (ValueError, AttributeError):
                detail = response.text[:500]
            said = f"refused {action} ({status})" if action else f"answered {status}"
            raise ServiceError(f"the Compute service {said}: {detail}", _exit_code_for(status), status=status)
        try:
            return response.json()
        except ValueError:
            raise ServiceError(f"the Compute service answered {action or method.upper() + ' ' + path} with no JSON",
                               Exit.PROTOCOL) from None


def _exit_code_for(status: int) -> int:
    if status in (400, 422):
        return Exit.BAD_REQUEST
    if status in (403, 404):
        return Exit.NO_PERMISSION
    return Exit.UNAVAILABLE
