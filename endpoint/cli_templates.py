"""The commands of the template-capable layout (templates.py): configure's template part,
``migrate-to-template-capable`` and ``render-user-config``, on the group cli.py defines."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import click

from .cli import EndpointContext, name_or_uuid_argument, pass_context
from .directory import EndpointDirectoryError

EXAMPLE_MAPPING = "example_identity_mapping_config.json"
GIVEN_MAPPING = "identity_mapping_config.json"
MULTI_USER_CONFIG = """\
# A multi-user endpoint: started by root, it runs each Globus identity's user endpoints as
# the local user the identity mapping names (the first identity of the submitter's set
# that maps). See docs/multi-user.md.
multi_user: true
identity_mapping_config_path: {mapping}
# Account checks and a session for each user (/etc/pam.d/<service_name>).
pam:
  enable: false
  service_name: globus-compute-endpoint
# With high_assurance: true, one line per task event of every user endpoint.
audit_log_path: {audit_log}
mu_child_ep_grace_period_s: 30
email: {email}
"""
EXAMPLE_MAPPING_TEXT = json.dumps([{
    "comment": "Globus usernames <netid>@example.edu run as the local account <netid>. More: "
               "https://docs.globus.org/globus-connect-server/v5.4/identity-mapping-guide/",
    "DATA_TYPE": "expression_identity_mapping#1.0.0",
    "mappings": [{"source": "{username}", "match": r"(.*)@example\.edu", "output": "{0}"}],
}], indent=2) + "\n"


@attrs.frozen
class MultiUser:
    """What configure --multi-user was given."""

    contact_email: str
    mapping: Path | None = None  # --id-mapping-config: the administrator's own mapping


def configure_template_capable(obj: EndpointContext, name: str, display_name: str | None,
                                manager_config: Path | None, given: dict[str, Path | None],
                                multi_user: MultiUser | None = None, policy_keys: str = "") -> None:
    from .config import ConfigError, parse_manager_config
    from .templates import SCHEMA_FILE, TemplateError, default_files, load_schema

    files = default_files(display_name)
    if manager_config:
        files["config.yaml"] = manager_config.read_text()
    files["config.yaml"] = files["config.yaml"].rstrip("\n") + "\n" + policy_keys
    if multi_user is not None:
        directory_path = obj.directory(name).path
        mapping_name = GIVEN_MAPPING if multi_user.mapping else EXAMPLE_MAPPING
        files[mapping_name] = multi_user.mapping.read_text() if multi_user.mapping else EXAMPLE_MAPPING_TEXT
        files["config.yaml"] = files["config.yaml"].rstrip("\n") + "\n\n" + MULTI_USER_CONFIG.format(
            mapping=directory_path / mapping_name, audit_log=directory_path / "audit.log",
            email=json.dumps(multi_user.contact_email))
    files.update({file_name: path.read_text() for file_name, path in given.items() if path is not None})
    try:
        parse_manager_config(files["config.yaml"], str(manager_config or "the new config.yaml"))
        schema_path = given[SCHEMA_FILE]
        if schema_path is not None:
            load_schema(schema_path)
    except (ConfigError, TemplateError) as exc:
        raise click.ClickException(str(exc)) from None
    directory = obj.directory(name)
    try:
        directory.create(files.pop("config.yaml"))
    except EndpointDirectoryError as exc:
        raise click.ClickException(str(exc)) from None
    from ..protocol.files import write_private_file

    for file_name, text in files.items():
        write_private_file(directory.path / file_name, text)
    kind = "multi-user" if multi_user is not None else "template-capable"
    click.echo(f"Created {kind} profile for endpoint named <{name}>\n")
    click.echo(f"\tConfiguration file: {directory.config_file}")
    click.echo(f"\tUser endpoint template: {directory.path / 'user_config_template.yaml.j2'}\n")
    if multi_user is not None:
        mapping_file = directory.path / (GIVEN_MAPPING if multi_user.mapping else EXAMPLE_MAPPING)
        click.echo(f"\tIdentity mapping: {mapping_file}\n\tStart it as root: globus-compute-endpoint start {name}\n")


@click.command("migrate-to-template-capable", short_help="Make an endpoint render its config from a template.")
@name_or_uuid_argument
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def migrate_to_template_capable(obj: EndpointContext, name: str, yes: bool) -> None:
    """Move the engine and tuning of the endpoint NAME (or UUID) into a user endpoint
    template; config.yaml keeps what concerns the endpoint itself (the old one is kept as
    config.yaml.backup)."""
    from .config import ConfigError
    from .status import EndpointState, endpoint_status
    from .templates import TemplateError, migrate

    directory = obj.existing(name)
    if endpoint_status(directory).state is EndpointState.RUNNING:
        raise click.ClickException(f"Endpoint {directory.name!r} is running; stop it first.")
    if not yes:
        click.confirm(f"Migrate endpoint {directory.name!r} to be template-capable?", abort=True)
    try:
        backup = migrate(directory.path)
    except (TemplateError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Endpoint {directory.name} is template-capable: its engine is in "
               f"{directory.path / 'user_config_template.yaml.j2'}; the old config is {backup}")


@click.command("render-user-config", short_help="Print a user endpoint's config as the template renders it.")
@click.option("--endpoint", "-e", "endpoint", metavar="NAME|UUID",
              help="Take the template, schema and options' defaults from this endpoint's directory.")
@click.option("--template", "-t", type=click.File(), help="The Jinja template to render ('-': standard input).")
@click.option("--user-options", "-o", type=click.File(), help="The user's options, a JSON object ('-': stdin).")
@click.option("--user-schema", "--schema", "-s", "user_schema", type=click.File(),
              help="A JSON schema to check the options against.")
@click.option("--parent-config", type=click.File(),
              help="YAML of the template-capable endpoint's config.yaml, for _GC.parent_config "
                   "[default: --endpoint's].")
@click.option("--user-runtime", type=click.File(), help="JSON for _GC.user_runtime.")
@click.option("--mapped-identity", type=click.File(),
              help="JSON for _GC.mapped_identity: {\"local\": {\"uname\": ...}, \"globus\": {\"id\": ...}}, or the "
                   "official's {\"local_user_record\": [name, passwd, uid, gid, gecos, dir, shell], "
                   "\"matched_identity\": ...} [default: you, and a null identity].")
@pass_context
def render_user_config(obj: EndpointContext, endpoint: str | None, template, user_options, user_schema,
                       parent_config, user_runtime, mapped_identity) -> None:
    """Render a user endpoint template to standard output, and check the result loads as an
    endpoint config. Files not given come from --endpoint's directory. Any one of them may be
    '-', standard input."""
    from .config import ConfigError, parse_config
    from .templates import TemplateError

    if sum(1 for f in (template, user_options, user_schema, parent_config, user_runtime, mapped_identity)
           if f is not None and f.name == "<stdin>") > 1:
        raise click.UsageError("at most one input may be read from standard input ('-')")
    directory = obj.existing(endpoint).path if endpoint else None
    try:
        text = _render(directory, template, user_options, user_schema, parent_config, user_runtime, mapped_identity)
        parse_config(text, "the rendered config")
    except (TemplateError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read the inputs: {exc}") from None
    click.echo(text)


def _render(directory: Path | None, template, user_options, user_schema, parent_config, user_runtime,
            mapped_identity) -> str:
    import json
    import os

    import cattrs

    from .config import parse_manager_config, read_config_text
    from .templates import Reserved, TemplateError, load_schema, render, schema_file, template_file
    from .templates import mapped_identity as identity_of

    manager_text = parent_config.read() if parent_config is not None else (
        read_config_text(directory / "config.yaml") if directory is not None and (directory / "config.yaml").exists()
        else "")
    if _declares_engine(manager_text):
        raise TemplateError("the parent config has an engine: it is a classic endpoint's, which does not render "
                            "templates")
    manager = parse_manager_config(manager_text, parent_config.name if parent_config else "the parent config")
    if template is not None:
        template_text, template_dir = template.read(), None
    elif directory is not None:
        path = template_file(directory, manager.user_config_template_path)
        template_text, template_dir = path.read_text(), path.parent
    else:
        raise click.UsageError("give --endpoint NAME or --template FILE")
    if user_schema is not None:
        schema = json.load(user_schema)
    else:
        schema = load_schema(schema_file(directory, manager.user_config_schema_path)) if directory else None
    identity = _mapped_identity(json.load(mapped_identity)) if mapped_identity else identity_of(os.getuid(), None)
    reserved = Reserved(cattrs.Converter().unstructure(manager), identity, dict(os.environ))
    return render(template_text, json.load(user_options) if user_options else {},
                  json.load(user_runtime) if user_runtime else None, schema, template_dir, reserved)


def _declares_engine(text: str) -> bool:
    import yaml

    from .templates import declares_engine

    try:
        return declares_engine(yaml.safe_load(text))
    except yaml.YAMLError:
        return False  # the manager config's loader says what is wrong


def _mapped_identity(data: object) -> dict:
    """_GC.mapped_identity from --mapped-identity: the shape templates see, or the official's
    input (a passwd record as its seven fields, and the matched identity)."""
    from .templates import PASSWD_FIELDS, TemplateError, identity_of_record

    if not isinstance(data, dict):
        raise TemplateError("--mapped-identity must be a JSON object")
    if "local" in data:
        return data
    record = data.get("local_user_record")
    if isinstance(record, list) and len(record) == len(PASSWD_FIELDS):
        record = dict(zip(PASSWD_FIELDS, record, strict=True))
    if not isinstance(record, dict) or not {"pw_name", "pw_uid", "pw_gid"} <= set(record):
        raise TemplateError("--mapped-identity needs \"local\" (as templates see it) or \"local_user_record\" "
                            "(a passwd record: [name, passwd, uid, gid, gecos, dir, shell])")
    matched = data.get("matched_identity")
    return identity_of_record(record, str(matched) if matched else None, [record["pw_gid"]])
