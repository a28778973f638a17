"""Template-capable endpoints: the official 4.x layout. Their ``config.yaml`` has no
``engine``; beside it, ``user_config_template.yaml.j2`` is a Jinja template of a user
endpoint's config.yaml, ``user_config_schema.json`` a JSON schema of the options a user may
submit with (the SDK's ``user_endpoint_config``), and ``user_environment.yaml`` environment
variables for user endpoints.

A user endpoint's config is the template rendered with the user's options: checked against
the schema first (an error names the option), rendered in Jinja's sandbox (a template cannot
reach Python's internals), every string option quoted as a YAML string so that no option can
add keys of its own, then loaded through the same config model as a classic endpoint's.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from .config import EndpointConfig, parse_config

log = logging.getLogger(__name__)

TEMPLATE_FILE = "user_config_template.yaml.j2"
SCHEMA_FILE = "user_config_schema.json"
ENVIRONMENT_FILE = "user_environment.yaml"
# Names the template sees besides the user's options; a user may not pass them.
RESERVED_OPTIONS = ("_GC", "parent_config", "mapped_identity", "user_runtime")

DEFAULT_MANAGER_CONFIG = """\
display_name: {display_name}
"""

DEFAULT_TEMPLATE = """\
# The config.yaml of each user endpoint this endpoint starts: a Jinja template rendered with
# the options the user submits with (the SDK's Executor(user_endpoint_config={...})),
# checked first against user_config_schema.json. String options arrive quoted as YAML
# strings; `|shell_escape` quotes one for a shell. `_GC.user_runtime` describes the user's
# Python and SDK.
#
# Whatever this template fills from an option, any user allowed to submit here chooses, and
# the user endpoint runs it as this endpoint's owner. Never fill a key that runs a shell
# command (endpoint_setup, endpoint_teardown, worker_init, a launcher, a container command)
# from an option unless every such user may run commands as that account; offer choices
# from a list in the schema (an "enum") instead.

engine:
  type: GlobusComputeEngine
  max_workers_per_node: {{ max_workers_per_node|default(1) }}

  provider:
    type: LocalProvider
    min_blocks: 0
    max_blocks: 1
    init_blocks: 1

# A user endpoint is started again when its user submits more tasks, so stop an idle one:
# 10 heartbeats of 30 s is 5 minutes. 5,760 is two days of apparent idleness (tasks out,
# nothing moving).
idle_heartbeats_soft: 10
idle_heartbeats_hard: 5760
"""

DEFAULT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "max_workers_per_node": {"type": "integer", "minimum": 1, "maximum": 1024},
    },
    # Options the template does not use are refused by name, not silently ignored.
    "additionalProperties": False,
}

DEFAULT_ENVIRONMENT = """\
# Environment variables for the user endpoints, as NAME: value (strings, no nesting). They
# override the environment the endpoint was started with.
#
#     SITE_SCRATCH: /scratch/shared
"""


class TemplateError(Exception):
    """The template, the schema or the user's options are wrong; str() says which and how."""


def is_template_capable(directory: Path) -> bool:
    """The official 4.x layout, read as the official reads it: a config.yaml without an
    engine (missing or empty included) is a template-capable endpoint's; with an engine, a
    classic one."""
    try:
        data = yaml.safe_load((directory / "config.yaml").read_text())
    except FileNotFoundError:
        return True
    except (OSError, yaml.YAMLError):
        return (directory / TEMPLATE_FILE).exists()  # the loader of its layout will say what is wrong
    return not declares_engine(data)


def declares_engine(data: object) -> bool:
    """A loaded config.yaml that names an engine: a classic endpoint's (a user endpoint's),
    which renders no templates."""
    return isinstance(data, dict) and "engine" in data


def template_file(directory: Path, configured: str | None = None) -> Path:
    """The template a template-capable endpoint renders: user_config_template_path when its
    config.yaml gives one (relative to the endpoint's directory), else the .j2 beside it; a
    missing .j2 falls back to the same name without .j2, as the official's does."""
    path = directory / Path(configured).expanduser() if configured else directory / TEMPLATE_FILE
    if not path.exists() and path.suffix == ".j2" and path.with_suffix("").exists():
        return path.with_suffix("")
    return path


def schema_file(directory: Path, configured: str | None = None) -> Path:
    return directory / Path(configured).expanduser() if configured else directory / SCHEMA_FILE


@attrs.frozen
class Reserved:
    """What a template sees besides the user's options, under _GC (and, deprecated, by its bare
    name), as the official's: the manager's config, the local account the user endpoint runs
    as with the Globus identity that asked for it, and the manager's environment."""

    parent_config: Mapping[str, Any] = attrs.field(factory=dict)
    mapped_identity: Mapping[str, Any] = attrs.field(factory=dict)
    env: Mapping[str, str] = attrs.field(factory=dict)


def mapped_identity(uid: int, identity_id: str | None) -> dict:
    """The official's mapped_identity for the local account uid and a Globus identity."""
    import pwd

    record = pwd.getpwuid(uid)
    return identity_of_record({field: getattr(record, field) for field in PASSWD_FIELDS}, identity_id,
                              os.getgrouplist(record.pw_name, record.pw_gid))


# A passwd record's fields, in the order pwd.struct_passwd (and the official's JSON) holds them.
PASSWD_FIELDS = ("pw_name", "pw_passwd", "pw_uid", "pw_gid", "pw_gecos", "pw_dir", "pw_shell")


def identity_of_record(record: Mapping[str, Any], identity_id: str | None, groups: list[int]) -> dict:
    """_GC.mapped_identity as templates see it, from a passwd record (by PASSWD_FIELDS names)."""
    return {"local": {"uname": record["pw_name"], "uid": record["pw_uid"], "gid": record["pw_gid"],
                      "gecos": record.get("pw_gecos", ""), "shell": record.get("pw_shell", ""),
                      "dir": record.get("pw_dir", ""), "groups": groups},
            "globus": {"id": identity_id or str(uuid.UUID(int=0))}}


def default_files(display_name: str | None) -> dict[str, str]:
    shown = "null" if display_name is None else yaml.safe_dump(display_name).splitlines()[0]
    return {"config.yaml": DEFAULT_MANAGER_CONFIG.format(display_name=shown), TEMPLATE_FILE: DEFAULT_TEMPLATE,
            SCHEMA_FILE: json.dumps(DEFAULT_SCHEMA, indent=2) + "\n", ENVIRONMENT_FILE: DEFAULT_ENVIRONMENT}


def load_schema(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        schema = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TemplateError(f"{path} is not a JSON schema: {exc}") from None
    if not isinstance(schema, dict):
        raise TemplateError(f"{path} is not a JSON schema: a JSON {type(schema).__name__}, not an object")
    return schema


def check_options(options: Any, schema: dict | None) -> dict:
    if not isinstance(options, dict):
        raise TemplateError(f"user options must be a JSON object, got {type(options).__name__}")
    reserved = sorted(set(options) & set(RESERVED_OPTIONS))
    if reserved:
        raise TemplateError(f"user option {reserved[0]!r} is a name the template reserves; "
                            f"reserved: {', '.join(RESERVED_OPTIONS)}")
    if schema is None:
        return options
    import jsonschema

    try:
        validator = jsonschema.validators.validator_for(schema)
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise TemplateError(f"the user config schema is not a valid JSON schema: {exc.message}") from None
    error = jsonschema.exceptions.best_match(validator(schema).iter_errors(options))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(the options)"
        raise TemplateError(f"user option {where}: {error.message}")
    return options


DEPRECATED_BARE_NAMES = ("parent_config", "mapped_identity", "user_runtime")


def render(template_text: str, options: dict, user_runtime: dict | None = None, schema: dict | None = None,
           template_dir: Path | None = None, reserved: Reserved = Reserved()) -> str:
    """The template rendered with the user's options (checked against schema first)."""
    import jinja2
    from jinja2 import meta
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    check_options(options, schema)
    runtime = _quoted(user_runtime or {})
    loader = jinja2.FileSystemLoader(str(template_dir)) if template_dir else None
    environment = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, loader=loader)
    environment.filters["shell_escape"] = _shell_escape
    gc = {"user_runtime": runtime, "parent_config": dict(reserved.parent_config),
          "mapped_identity": dict(reserved.mapped_identity), "env": dict(reserved.env)}
    try:
        for name in sorted(meta.find_undeclared_variables(environment.parse(template_text))
                           & set(DEPRECATED_BARE_NAMES)):
            log.warning("Template access to `%s` is deprecated; access via `_GC` instead (i.e., _GC.%s)", name, name)
        template = environment.from_string(template_text)
        # One mapping, not keyword arguments: an option named "self" must not clash with render's own.
        return template.render({**_quoted(options), "_GC": gc, **{name: gc[name] for name in DEPRECATED_BARE_NAMES}})
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"the template needs a user option that was not given: {exc.message}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"the template has a syntax error on line {exc.lineno}: {exc.message}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"the template tried something the sandbox forbids: {exc}") from None


def render_directory(directory: Path, options: dict, user_runtime: dict | None = None, *,
                     template: Path | None = None, schema: Path | None = None,
                     reserved: Reserved = Reserved()) -> tuple[str, EndpointConfig]:
    """A user endpoint's config.yaml text and config, from a template-capable endpoint's files
    (its template and schema where its config.yaml puts them)."""
    template_path = template or template_file(directory)
    try:
        template_text = template_path.read_text()
    except OSError as exc:
        raise TemplateError(f"cannot read the template {template_path}: {exc.strerror}") from None
    text = render(template_text, options, user_runtime, load_schema(schema or schema_file(directory)),
                  template_path.parent, reserved)
    return text, parse_config(text, f"{template_path} rendered with the user's options")


def user_environment(directory: Path) -> dict[str, str]:
    path = directory / ENVIRONMENT_FILE
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise TemplateError(f"{path} must map variable names to values, got a {type(data).__name__}")
    fixed = sorted(set(data) & {"HOME", "USER", "PWD"})
    if fixed:
        raise TemplateError(f"{path} sets {fixed[0]}, which is the endpoint's own; remove it")
    return {str(name): str(value) for name, value in data.items()}


def _quoted(value: Any) -> Any:
    """Strings as YAML double-quoted scalars (JSON's quoting is YAML's): an option cannot
    close its string and add keys. Numbers and booleans as they are, None as null."""
    if isinstance(value, dict):
        return {key: _quoted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_quoted(item) for item in value]
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    if isinstance(value, (bool, int, float)):
        return value  # as the official: rendered by Jinja (True, 4, 0.5), which YAML reads back
    raise TemplateError(f"a user option of type {type(value).__name__}; options are JSON values")


def _shell_escape(value: Any) -> Any:
    """A quoted string option, made safe for a shell (and still a YAML string)."""
    if not isinstance(value, str):
        return value
    try:
        text = json.loads(value)
    except ValueError:
        return value
    return json.dumps(shlex.quote(text)) if isinstance(text, str) else value


# What stays in a migrated endpoint's config.yaml; the rest goes to its template. Some keys
# are in both: the user endpoints talk to the same service the same way.
MANAGER_KEYS = ("display_name", "admins", "allowed_functions", "authentication_policy", "subscription_id", "public",
                "high_assurance")
SHARED_KEYS = ("debug", "amqp_port", "heartbeat_period", "local_compute_services", "environment")


def migrate(directory: Path) -> Path:
    """Make a classic endpoint template-capable: its engine and tuning become the template
    (as they are: a YAML file is a Jinja template with no placeholders), the keys of the
    endpoint itself stay in config.yaml; the old file is kept as config.yaml.backup. Returns
    the backup's path."""
    config_path = directory / "config.yaml"
    backup = config_path.with_name("config.yaml.backup")
    if is_template_capable(directory):
        raise TemplateError(f"endpoint {directory.name} is template-capable already")
    if backup.exists():
        raise TemplateError(f"{backup} exists already: move it away first, it may be the only copy of a config")
    text = config_path.read_text()
    parse_config(text, str(config_path))  # only a config that loads is migrated
    data = yaml.safe_load(text)
    manager = {key: data[key] for key in (*MANAGER_KEYS, *SHARED_KEYS) if key in data}
    template = {key: value for key, value in data.items() if key not in MANAGER_KEYS}
    from ..protocol.files import write_private_file

    write_private_file(backup, text)
    write_private_file(directory / TEMPLATE_FILE, "# Migrated from config.yaml (kept as config.yaml.backup).\n"
                       + yaml.safe_dump(template, sort_keys=False))
    for name, default in ((SCHEMA_FILE, json.dumps(DEFAULT_SCHEMA, indent=2) + "\n"),
                          (ENVIRONMENT_FILE, DEFAULT_ENVIRONMENT)):
        if not (directory / name).exists():
            write_private_file(directory / name, default)
    write_private_file(config_path, yaml.safe_dump(manager, sort_keys=False) if manager else "display_name: null\n")
    return backup
