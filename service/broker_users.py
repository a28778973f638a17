"""Broker users through RabbitMQ's management API: one per endpoint, one per SDK identity.

An endpoint's user reads only its own task queue, and publishes only to the results and
heartbeats exchanges, with its own id as the routing key (topic permissions): it cannot
read another endpoint's tasks, consume anybody's results, or speak for another endpoint.
An SDK identity's user reads only that identity's task group queues (their names begin with
the identity's queue prefix) and publishes nothing. Each gets a new password whenever the
service hands out its URL.
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


def endpoint_user(endpoint_id: str, vhost: str) -> str:
    return f"ep-{endpoint_id}@{vhost}"


def client_user(prefix: str, vhost: str) -> str:
    return f"sdk-{prefix.strip('_')}@{vhost}"


class ForeignBrokerUser(RuntimeError):
    """A user this service would make already has permissions on another vhost."""


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
        user, password = endpoint_user(endpoint_id, self.vhost), secrets.token_urlsafe(24)
        self._refuse_foreign(user)
        own_queue = f"^{re.escape(endpoint_id)}\\.(tasks|commands)$"  # its tasks, and the service's commands
        self._call("put", f"users/{quote(user, safe='')}", {"password": password, "tags": ""})
        self._call("put", f"permissions/{quote(self.vhost, safe='')}/{quote(user, safe='')}",
                   {"configure": own_queue, "write": "^(results|heartbeats)$", "read": own_queue})
        for exchange in ("results", "heartbeats"):
            self._call("put", f"topic-permissions/{quote(self.vhost, safe='')}/{quote(user, safe='')}",
                       {"exchange": exchange, "write": f"^{re.escape(endpoint_id)}\\.{exchange}$", "read": "^$"})
        return _with_credentials(public_url, user, password)

    def grant_client(self, identity: str, public_url: str, prefix: str) -> str:
        """(Re)create the SDK identity's user with a new password; return public_url with its
        credentials. It may read (and declare) only queues named with the identity's prefix."""
        user, password = client_user(prefix, self.vhost), secrets.token_urlsafe(24)
        self._refuse_foreign(user)
        own_queues = f"^{re.escape(prefix)}"
        self._call("put", f"users/{quote(user, safe='')}", {"password": password, "tags": ""})
        self._call("put", f"permissions/{quote(self.vhost, safe='')}/{quote(user, safe='')}",
                   {"configure": own_queues, "write": "^$", "read": own_queues})
        log.debug("broker user %s for identity %s", user, identity)
        return _with_credentials(public_url, user, password)

    def revoke(self, endpoint_id: str) -> None:
        user = endpoint_user(endpoint_id, self.vhost)
        if self._foreign_vhosts(user):
            log.warning("broker user %s has permissions on other vhosts; not ours to delete", user)
            return
        self._call("delete", f"users/{quote(user, safe='')}", None, missing_ok=True)

    def _foreign_vhosts(self, user: str) -> list[str]:
        response = self._call("get", f"users/{quote(user, safe='')}/permissions", None, missing_ok=True)
        if response is None:
            return []
        return sorted({p["vhost"] for p in response.json()} - {self.vhost})

    def _refuse_foreign(self, user: str) -> None:
        foreign = self._foreign_vhosts(user)
        if foreign:
            log.error("broker user %s has permissions on vhost(s) %s besides ours (%s): refusing to reset "
                      "its password or hand it out", user, ", ".join(foreign), self.vhost)
            raise ForeignBrokerUser(f"broker user {user} belongs to another vhost as well")

    def _call(self, method: str, path: str, body: dict | None,
              missing_ok: bool = False) -> requests.Response | None:
        """The API's answer; None for a 404 when missing_ok; RuntimeError for any other failure."""
        response = requests.request(method, f"{self.api}/{path}", json=body, auth=self.auth, timeout=TIMEOUT_S)
        if response.status_code == 400 and "user_already_exists" in response.text:
            # Two requests made the same user at once (registrations through two replicas):
            # the user exists now, and a PUT of an existing user updates it.
            response = requests.request(method, f"{self.api}/{path}", json=body, auth=self.auth, timeout=TIMEOUT_S)
        if response.status_code == 404 and missing_ok:
            return None
        if not response.ok:
            raise RuntimeError(f"RabbitMQ management API {method.upper()} {path}: {response.status_code} "
                               f"{response.text[:200]}")
        return response


def _with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))
