"""Broker URL helpers shared by the service and the endpoint."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***, fit for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def with_port(url: str, port: int) -> str:
    """The URL with its port replaced (the config's amqp_port)."""
    parts = urlsplit(url)
    credentials, _, _ = parts.netloc.rpartition("@")
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{credentials + '@' if credentials else ''}{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def portable_vhost(url: str) -> str:
    """Spell the default vhost as /%2F: kombu reads "//" as "/", but pika reads it as ""."""
    parts = urlsplit(url)
    if parts.path == "//":
        return urlunsplit(parts._replace(path="/%2F"))
    return url


# The embedded broker: kombu's filesystem transport in one folder, for a service and its
# endpoints on one machine without RabbitMQ. Its URL names the folder.
EMBEDDED_SCHEME = "filesystem"
EMBEDDED_POLLING_INTERVAL_S = 0.01


def embedded_url(folder) -> str:
    return f"{EMBEDDED_SCHEME}://{folder}"


def is_embedded(url: str) -> bool:
    return urlsplit(url).scheme == EMBEDDED_SCHEME


def embedded_folder(url: str) -> str:
    return urlsplit(url).path
