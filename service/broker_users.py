"""One RabbitMQ user per endpoint, through the management API, where it answers.

Each endpoint then reaches only its own task queue (read), and publishes only to the
results and heartbeats exchanges (write): a leaked endpoint credential cannot read
another endpoint's tasks or consume anybody's results. Where the management API does
not answer, every endpoint is handed the service's own broker credentials.
"""

from __future__ import annotations

import logging
import re
import secrets
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import requests

log = logging.getLogger(__name__)

MANAGEMENT_PORT = 15672
TIMEOUT_S = 10


def endpoint_user(endpoint_id: str) -> str:
    return f"ep-{endpoint_id}"


class BrokerUsers:
    def __init__(self, broker_url: str, management_url: str | None = None):
        parts = urlsplit(broker_url)
        self.vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        self.auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
        self.api = (management_url or f"http://{parts.hostname or 'localhost'}:{MANAGEMENT_PORT}").rstrip("/")
        self.api += "/api"

    def available(self) -> bool:
        """Whether the management API answers and lets the service's user manage users."""
        try:
            response = requests.get(f"{self.api}/whoami", auth=self.auth, timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            log.info("RabbitMQ management API at %s does not answer (%s): endpoints share the service's "
                     "broker credentials", self.api, exc)
            return False
        tags = response.json().get("tags", []) if response.ok else []
        tags = tags.split(",") if isinstance(tags, str) else tags
        if "administrator" not in tags:
            log.warning("RabbitMQ management API at %s: user %s may not manage users (%s); endpoints share "
                        "the service's broker credentials", self.api, self.auth[0], response.status_code)
            return False
        log.info("RabbitMQ management API at %s answers: each endpoint gets a broker user of its own", self.api)
        return True

    def grant(self, endpoint_id: str, public_url: str) -> str:
        """(Re)create the endpoint's user with a new password; return public_url with its credentials."""
        user, password = endpoint_user(endpoint_id), secrets.token_urlsafe(24)
        own_queue = f"^{re.escape(endpoint_id)}\\.tasks$"
        self._call("put", f"users/{quote(user, safe='')}", {"password": password, "tags": ""})
        self._call("put", f"permissions/{quote(self.vhost, safe='')}/{quote(user, safe='')}",
                   {"configure": own_queue, "write": "^(results|heartbeats)$", "read": own_queue})
        parts = urlsplit(public_url)
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc.rpartition('@')[2]}"
        return urlunsplit(parts._replace(netloc=netloc))

    def revoke(self, endpoint_id: str) -> None:
        self._call("delete", f"users/{quote(endpoint_user(endpoint_id), safe='')}", None, missing_ok=True)

    def _call(self, method: str, path: str, body: dict | None, missing_ok: bool = False) -> None:
        response = requests.request(method, f"{self.api}/{path}", json=body, auth=self.auth, timeout=TIMEOUT_S)
        if response.status_code == 404 and missing_ok:
            return
        if not response.ok:
            raise RuntimeError(f"RabbitMQ management API {method.upper()} {path}: {response.status_code} "
                               f"{response.text[:200]}")
