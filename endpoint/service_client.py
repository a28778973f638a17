"""The Compute service's endpoint routes the CLI calls besides registration: status, lock
(a remote stop), delete. Each failure is a ServiceError that says what happened and carries
the exit code (sysexits), as registration's do."""

from __future__ import annotations

from typing import Any

import requests

from .errors import EndpointError
from .exit_codes import Exit
from .version import __version__

TIMEOUT_S = 30


class ServiceError(EndpointError):
    """A call to the service failed; str() says why. ``unreachable``: no answer at all."""

    def __init__(self, message: str, exit_code: int, unreachable: bool = False, status: int | None = None):
        super().__init__(message, exit_code)
        self.unreachable = unreachable
        self.status = status  # the HTTP status, when the service answered


class ServiceClient:
    def __init__(self, service_url: str, token: str):
        self.service_url = service_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": f"compute-endpoint/{__version__}"}

    def endpoint_status(self, endpoint_id: str) -> dict:
        return self._call("get", f"/v2/endpoints/{endpoint_id}/status")

    def lock_endpoint(self, endpoint_id: str) -> dict:
        """Stop the endpoint wherever it runs: the service tells it, and refuses its
        registration for a while."""
        return self._call("post", f"/v3/endpoints/{endpoint_id}/lock")

    def delete_endpoint(self, endpoint_id: str) -> dict:
        return self._call("delete", f"/v2/endpoints/{endpoint_id}")

    def _call(self, method: str, path: str) -> Any:
        url = self.service_url + path
        try:
            response = requests.request(method, url, headers=self._headers, timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            raise ServiceError(f"cannot reach the Compute service at {self.service_url}: {exc}",
                               Exit.TRY_AGAIN, unreachable=True) from None
        if response.status_code == 401:
            raise ServiceError(f"the Compute service at {self.service_url} did not accept the stored token; "
                               "log in again: globus-compute-endpoint login --force", Exit.NO_PERMISSION, status=401)
        if response.status_code >= 400:
            try:
                detail = response.json().get("error") or response.text
            except (ValueError, AttributeError):
                detail = response.text[:500]
            code = Exit.NO_PERMISSION if response.status_code in (403, 404) else Exit.UNAVAILABLE
            raise ServiceError(f"the Compute service answered {response.status_code}: {detail}", code,
                               status=response.status_code)
        try:
            return response.json()
        except ValueError:
            raise ServiceError(f"the Compute service answered {method.upper()} {path} with no JSON",
                               Exit.PROTOCOL) from None
