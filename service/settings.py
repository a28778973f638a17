"""How the service is told to run (from compute-service serve's options)."""

from __future__ import annotations

import attrs

DEFAULT_MAX_TASKS_PER_SUBMIT = 10_000


@attrs.frozen
class ServiceSettings:
    db_url: str
    broker_url: str
    public_broker_url: str | None = None
    heartbeat_grace_s: float = 60.0
    # False: every endpoint and SDK client is handed the service's own broker credentials
    # (an explicit opt-in for trusted single-user machines); True: each gets a broker user of
    # its own, which needs RabbitMQ's management API.
    endpoint_broker_users: bool = True
    max_tasks_per_submit: int = DEFAULT_MAX_TASKS_PER_SUBMIT
    management_url: str | None = None  # RabbitMQ's management API [default: port 15672 of the broker's host]
    # A user endpoint unused, silent and owed no task this long is reclaimed (user_endpoints.py).
    reclaim_user_endpoints_after_s: float = 86_400.0


class ServiceConfigError(Exception):
    """The service cannot serve safely as configured; str() says what to change."""
