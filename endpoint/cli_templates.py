"""The commands of the template-capable layout (templates.py): configure's template part,
``migrate-to-template-capable`` and ``render-user-config``, on the group cli.py defines."""

from __future__ import annotations

from pathlib import Path

import click

from .cli import EndpointContext, app, name_or_uuid_argument, pass_context
from .directory import EndpointDirectoryError


def configure_template_capable(obj: EndpointContext, name: str, display_name: str | None,
                                manager_config: Path | None, given: dict[str, Path | None]) -> None:
    from .config import ConfigError, parse_manager_config
    from .templates import SCHEMA_FILE, TemplateError, default_files, load_schema

    files = default_files(display_name)
    if manager_config:
        files["config.yaml"] = manager_config.read_text()
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
    click.echo(f"Created template-capable profile for endpoint named <{name}>\n")
    click.echo(f"\tConfiguration file: {directory.config_file}")
    click.echo(f"\tUser endpoint template: {directory.path / 'user_config_template.yaml.j2'}\n")


@app.command("migrate-to-template-capable", short_help="Make an endpoint render its config from a template.")
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


@app.command("render-user-config", short_help="Print a user endpoint's config as the template renders it.")
@click.option("--endpoint", "-e", "endpoint", metavar="NAME|UUID",
              help="Take the template, schema and options' defaults from this endpoint's directory.")
@click.option("--template", "-t", type=click.File(), help="The Jinja template to render ('-': standard input).")
@click.option("--user-options", "-o", type=click.File(), help="The user's options, a JSON object ('-': stdin).")
@click.option("--user-schema", "--schema", "-s", "user_schema", type=click.File(),
              help="A JSON schema to check the options against.")
@click.option("--user-runtime", type=click.File(), help="JSON for the template's user_runtime.")
@pass_context
def render_user_config(obj: EndpointContext, endpoint: str | None, template, user_options, user_schema,
                       user_runtime) -> None:
    """Render a user endpoint template to standard output, and check the result loads as an
    endpoint config. Files not given come from --endpoint's directory."""
    import json

    from .config import ConfigError, parse_config
    from .templates import SCHEMA_FILE, TEMPLATE_FILE, TemplateError, load_schema, render

    directory = obj.existing(endpoint).path if endpoint else None
    try:
        if template is not None:
            template_text = template.read()
        elif directory is not None:
            template_text = (directory / TEMPLATE_FILE).read_text()
        else:
            raise click.UsageError("give --endpoint NAME or --template FILE")
        if user_schema is not None:
            schema = json.load(user_schema)
        else:
            schema = load_schema(directory / SCHEMA_FILE) if directory is not None else None
        options = json.load(user_options) if user_options else {}
        runtime = json.load(user_runtime) if user_runtime else None
        text = render(template_text, options, runtime, schema, directory)
        parse_config(text, "the rendered config")
    except (TemplateError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read the inputs: {exc}") from None
    click.echo(text)
