"""What every child is given: the frozen, picklable settings of one endpoint run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


@attrs.frozen
class PublishTarget:
    """Where and how a link publishes (the registration's queue_publish_kwargs)."""

    connection_url: str
    exchange: str
    routing_key: str
    mandatory: bool = True
    properties: Mapping[str, Any] = attrs.field(factory=lambda: {"delivery_mode": 2})


def tree_title(endpoint_id: object, name: str) -> str:
    """The supervisor's process title, as the documentation shows it; children add their role."""
    return f"Globus Compute Endpoint ({endpoint_id}, {name})"


class _Titled:
    """The process titles of a tree's members, from its endpoint's id and name."""

    endpoint_id: str
    endpoint_name: str

    @property
    def title(self) -> str:
        return tree_title(self.endpoint_id, self.endpoint_name)

    def role_title(self, role: str) -> str:
        return f"{self.title} {role}"


@attrs.frozen
class WorkerSettings(_Titled):
    endpoint_id: str
    endpoint_name: str
    log_file: str
    debug: bool
    task_queue_url: str
    task_queue: str
    results: PublishTarget
    heartbeats: PublishTarget
    engine: Mapping[str, Any]  # the engine block of config.yaml, as plain data
    heartbeat_period_s: float = 30.0
    prefetch: int = 0  # 0: sized from the engine's capacity
    max_task_bytes_in_flight: int = 0  # 0: the task link's default
    run_dir: str = ""
    config_raw: str = ""
    command_queue: str = ""  # where the service sends the endpoint commands (stop); none from older services
    # A broker silent this long is taken as gone (config heartbeat_threshold): the AMQP
    # heartbeat is half of it, as a connection is dead after two missed heartbeats.
    broker_silence_s: float = 120.0


@attrs.frozen
class ManagerSettings(_Titled):
    """What the children of a template-capable endpoint's root tree are given: the command
    link's queue, and where the endpoint's own status reports go."""

    endpoint_id: str
    endpoint_name: str
    log_file: str
    debug: bool
    command_url: str
    command_queue: str
    heartbeats: PublishTarget
    heartbeat_period_s: float = 30.0
    run_dir: str = ""
    broker_silence_s: float = 120.0
    # The root's own allowed_functions, which every user endpoint under it inherits.
    allowed_functions: tuple[str, ...] | None = None
    max_user_endpoints: int = 16  # running at once
    max_user_endpoint_starts: int = 4  # starting at once
    # Where its template and schema are, and its config as templates see it (_GC.parent_config).
    template_path: str = ""
    schema_path: str = ""
    parent_config: Mapping[str, Any] = attrs.field(factory=dict)
    # A multi-user endpoint's (run as root): who each identity runs as, PAM, the audit log.
    identity_mapping_path: str = ""  # empty: not multi-user
    pam_service: str = ""  # empty: no PAM
    audit_log_path: str = ""  # empty: no audit log (it needs high_assurance too)
