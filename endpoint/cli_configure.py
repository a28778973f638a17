"""`configure`: an endpoint's directory with its default files, as the official's configure makes it."""

from __future__ import annotations

from pathlib import Path

import click

from .cli import EndpointContext, _as_uuid, name_argument, pass_context
from .directory import EndpointDirectoryError

BOOLEAN_WORDS = {"true", "false", "yes", "no", "on", "off", "1", "0", "t", "f", "y", "n"}


class _ConfigureCommand(click.Command):
    """The official's --multi-user takes a value (--multi-user true); given bare, as in
    `configure --multi-user NAME`, it means true rather than swallowing NAME."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        args = list(args)
        for index, arg in enumerate(args):
            if arg == "--multi-user" and (index + 1 == len(args) or args[index + 1].lower() not in BOOLEAN_WORDS):
                args.insert(index + 1, "true")
                break
        return super().parse_args(ctx, args)


@click.command(cls=_ConfigureCommand, short_help="Create an endpoint's directory and default config.")
@name_argument
@click.option("--display-name", help="A friendly name shown by the web service instead of NAME.")
@click.option("--core-config", "--endpoint-config", "endpoint_config", metavar="FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Start from this config.yaml instead of the default (checked first).")
@click.option("--manager-config", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The official's former name of --core-config (deprecated there too).")
@click.option("--auth-policy", metavar="UUID", help="Globus authentication policy (config key authentication_policy).")
@click.option("--subscription-id", metavar="UUID", help="Globus subscription (config key subscription_id).")
@click.option("--high-assurance", is_flag=True, help="High assurance (config key high_assurance).")
@click.option("--template-capable", is_flag=True,
              help="The official 4.x layout: user endpoints rendered from a template (see the README).")
@click.option("--template-config", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --template-capable: this user_config_template.yaml.j2 instead of ours.")
@click.option("--schema-config", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --template-capable: this user_config_schema.json instead of ours.")
@click.option("--user-env-config", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --template-capable: this user_environment.yaml instead of ours.")
@click.option("--multi-user", type=click.BOOL, default=False, metavar="[BOOLEAN]",
              help="A multi-user endpoint, run by root: each identity's work runs as the local user it maps "
                   "to (needs --contact-email).")
@click.option("--contact-email", metavar="EMAIL", help="The administrator's contact (config key email).")
@click.option("--id-mapping-config", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --multi-user: this identity mapping instead of the example.")
@pass_context
def configure(obj: EndpointContext, name: str, display_name: str | None, endpoint_config: Path | None,
              manager_config: Path | None, auth_policy: str | None, subscription_id: str | None,
              high_assurance: bool, template_capable: bool, template_config: Path | None,
              schema_config: Path | None, user_env_config: Path | None, multi_user: bool,
              contact_email: str | None, id_mapping_config: Path | None) -> None:
    """Create the endpoint directory NAME with a default config.yaml (and, with
    --template-capable or any of the official template options, the template files)."""
    from .config import ConfigError, default_config_text, parse_config

    if manager_config is not None:
        if endpoint_config is not None:
            click.echo("Warning: both --manager-config and --core-config were given; --manager-config is "
                       "deprecated and ignored.", err=True)
        else:
            endpoint_config = manager_config
    if high_assurance and not (subscription_id and auth_policy):
        raise click.ClickException("High Assurance(HA) endpoints require both a HA policy and a HA subscription "
                                   "id (--auth-policy UUID and --subscription-id UUID)")

    policy_keys = ""  # the same keys in either layout's config.yaml
    for key, value in (("authentication_policy", auth_policy), ("subscription_id", subscription_id)):
        if value is not None:
            if _as_uuid(value) is None:
                raise click.BadParameter(f"{value!r} is not a UUID", param_hint=f"--{key.replace('_', '-')}")
            policy_keys += f"{key}: {value}\n"
    if high_assurance:
        policy_keys += "high_assurance: true\n"
    if multi_user and not contact_email:
        raise click.UsageError("Email must be specified via --contact-email for multi-user endpoints")
    if id_mapping_config is not None and not multi_user:
        raise click.UsageError("--id-mapping-config requires multi user support (hint: --multi-user true)")
    if multi_user or template_capable or template_config or schema_config or user_env_config:
        from .cli_templates import MultiUser, configure_template_capable

        configure_template_capable(obj, name, display_name, endpoint_config,
                                    {"user_config_template.yaml.j2": template_config,
                                     "user_config_schema.json": schema_config,
                                     "user_environment.yaml": user_env_config},
                                    MultiUser(contact_email or "", id_mapping_config) if multi_user else None,
                                    policy_keys)
        return
    default = default_config_text(display_name)
    text = (endpoint_config.read_text() if endpoint_config else default) + policy_keys
    # Our own default as it is (loaded by the unit tests, any display name) is not checked again:
    # checking its engine's options against Parsl's costs a Parsl import, most of configure's time.
    if text != default:
        try:
            parse_config(text, str(endpoint_config or "the new config.yaml"))
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    directory = obj.directory(name)
    try:
        directory.create(text)
    except EndpointDirectoryError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created profile for endpoint named <{name}>\n")
    click.echo(f"\tConfiguration file: {directory.config_file}\n")
