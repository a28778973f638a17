"""What a template-capable endpoint's start works out before its tree runs (lifecycle.py's
steps): what registration tells the service, the settings of the root tree (manager.py),
and a multi-user endpoint's identity mapping file."""

from __future__ import annotations

from pathlib import Path

from ..workers.settings import ManagerSettings
from .config import ConfigError, ConfigProblem, ManagerConfig
from .errors import EndpointError


def registration_metadata(directory: Path, config: ManagerConfig) -> dict:
    """What a template-capable endpoint tells the service at registration, as the official
    manager does: its template and schema (the service knows it by them). A template not
    there yet is sent empty: each start then fails its tasks saying it cannot be read."""
    from .templates import load_schema, schema_file, template_file

    template = template_file(directory, config.user_config_template_path)
    return {"user_config_template": template.read_text() if template.is_file() else "",
            "user_config_schema": load_schema(schema_file(directory, config.user_config_schema_path)) or {}}


def manager_settings(directory, config: ManagerConfig, registration: dict, debug: bool) -> ManagerSettings:
    import cattrs

    from .templates import schema_file, template_file
    from .tree import broker_url, publish_target

    info = registration.get("command_queue_info")
    if not isinstance(info, dict) or not info.get("queue"):
        from .exit_codes import Exit

        raise EndpointError("The Compute service answered the registration without command_queue_info: it cannot "
                             "start user endpoints for a template-capable endpoint (update it, or migrate back to "
                             "a config.yaml with an engine).", Exit.PROTOCOL)
    return ManagerSettings(
        endpoint_id=str(registration["endpoint_id"]), endpoint_name=directory.name, log_file=str(directory.log_file),
        debug=debug, command_url=broker_url(info["connection_url"], config.amqp_port), command_queue=info["queue"],
        heartbeats=publish_target(registration["heartbeat_queue_info"], config.amqp_port),
        heartbeat_period_s=config.effective_heartbeat_period, run_dir=str(directory.path),
        allowed_functions=tuple(config.allowed_functions) if config.allowed_functions is not None else None,
        max_user_endpoints=config.max_user_endpoints, max_user_endpoint_starts=config.max_user_endpoint_starts,
        template_path=str(template_file(directory.path, config.user_config_template_path)),
        schema_path=str(schema_file(directory.path, config.user_config_schema_path)),
        parent_config=cattrs.Converter().unstructure(config),
        identity_mapping_path=str(identity_mapping_path(directory.path, config) or ""),
        pam_service=config.pam.service_name if config.maps_identities and config.pam.enable else "",
        audit_log_path=(config.audit_log_path or "") if config.maps_identities and config.high_assurance else "")


def identity_mapping_path(directory: Path, config: ManagerConfig) -> Path | None:
    """A multi-user endpoint's identity mapping file (relative to the endpoint's directory)."""
    if not config.maps_identities:
        return None
    if not config.identity_mapping_config_path:
        raise ConfigError(str(directory / "config.yaml"), [ConfigProblem(
            ("identity_mapping_config_path",), "is required by multi_user: true (the JSON file that maps each "
            "Globus identity to a local user; configure --multi-user writes an example)")])
    return directory / Path(config.identity_mapping_config_path).expanduser()
