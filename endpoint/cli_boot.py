"""`enable-on-boot` and `disable-on-boot`: a systemd unit that starts an endpoint at boot."""

from __future__ import annotations

import os
from pathlib import Path

import click

from .cli import EndpointContext, name_argument, pass_context

unit_dir_option = click.option(
    "--unit-dir", type=click.Path(file_okay=False, path_type=Path),
    help="Where the unit goes [default: /etc/systemd/system; ~/.config/systemd/user with --user].")
user_option = click.option("--user", "user_unit", is_flag=True,
                           help="A systemd user unit, for those without root (needs lingering to run logged out).")


@click.command("enable-on-boot", short_help="Install a systemd unit that starts an endpoint at boot.")
@name_argument
@user_option
@unit_dir_option
@pass_context
def enable_on_boot(obj: EndpointContext, name: str, user_unit: bool, unit_dir: Path | None) -> None:
    """Install a systemd unit that starts the endpoint NAME at boot."""
    from .boot import BootError, default_unit_dir, enable_instructions, install
    from .status import EndpointState, endpoint_status

    directory = obj.existing(name)
    status = endpoint_status(directory)
    if status.state is EndpointState.RUNNING:
        raise click.ClickException(f"Endpoint {name!r} is running (pid {status.pid}); stop it first, so that "
                                   "systemd alone starts it.")
    if not user_unit and os.geteuid() == 0 and os.environ.get("SUDO_USER"):
        click.echo(f"Warning: running under sudo, so the unit runs the endpoint as root (User=root), with root's "
                   f"endpoint {directory.path}. To run it as {os.environ['SUDO_USER']}, run this command as "
                   f"{os.environ['SUDO_USER']} (with --user for a unit of your own, or --unit-dir for a directory "
                   "you may write).", err=True)
    try:
        install(name, obj.base_dir, unit_dir or default_unit_dir(user_unit), user_unit)
    except (BootError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(enable_instructions(name, user_unit))


@click.command("disable-on-boot", short_help="Print the commands that remove the systemd unit.")
@name_argument
@user_option
@unit_dir_option
@pass_context
def disable_on_boot(obj: EndpointContext, name: str, user_unit: bool, unit_dir: Path | None) -> None:
    """Print the commands that stop and remove the systemd unit of NAME."""
    from .boot import default_unit_dir, disable_instructions

    obj.directory(name)
    click.echo(disable_instructions(name, unit_dir or default_unit_dir(user_unit), user_unit))
