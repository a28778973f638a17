"""`login`, `logout` and `whoami`: the credentials this machine keeps for the Compute service."""

from __future__ import annotations

import sys

import click

from .cli import EndpointContext, _exit_on_error, pass_context

service_option = click.option(
    "--service", "service", metavar="URL",
    help="The Compute service [default: as start chooses it, from GLOBUS_SDK_SERVICE_URL_COMPUTE or "
         "GLOBUS_SDK_ENVIRONMENT; production otherwise].")


def _credentials(obj: EndpointContext, service: str | None):
    from .auth import AuthError, Credentials
    from .service_urls import environment_name, service_url

    try:
        return Credentials(obj.base_dir, (service or service_url()).rstrip("/"), environment_name())
    except AuthError as exc:
        raise click.ClickException(str(exc)) from None


@click.command(short_help="Log in to the Compute service.")
@service_option
@click.option("--token", envvar="COMPUTE_SERVICE_TOKEN",
              help="For a local compute-service: a token from `compute-service token create` (asked for when not "
                   "given). '-' reads it from standard input; so does $COMPUTE_SERVICE_TOKEN, which keeps it out "
                   "of the command line that ps shows.")
@click.option("--browser/--no-browser", default=False, show_default=True,
              help="For Globus Auth: also open the login link in a web browser.")
@click.option("--force", is_flag=True, help="Log in again even when credentials are stored.")
@pass_context
def login(obj: EndpointContext, service: str | None, token: str | None, browser: bool, force: bool) -> None:
    """Log in to the Compute service: Globus Auth for the hosted service (a link and a code),
    a compute-service token for a local one."""
    from .login import login_step

    if token == "-":
        token = sys.stdin.readline().strip()
    credentials = _credentials(obj, service)
    _exit_on_error(lambda: login_step(credentials, token, browser, force))


@click.command(short_help="Forget (and revoke) stored credentials.")
@service_option
@click.option("--force", is_flag=True, help="Log out even while endpoints are running.")
@pass_context
def logout(obj: EndpointContext, service: str | None, force: bool) -> None:
    """Forget (and revoke, for Globus Auth) the stored credentials for the Compute service."""
    from .directory import list_endpoint_dirs
    from .status import EndpointState, endpoint_status

    running = [d.name for d in list_endpoint_dirs(obj.base_dir)
               if endpoint_status(d).state is EndpointState.RUNNING]
    if running and not force:
        raise click.ClickException(f"Endpoints are running ({', '.join(running)}); stop them first or pass --force.")
    credentials = _credentials(obj, service)
    if _exit_on_error(credentials.logout):
        click.echo(f"Logged out of {credentials.service_url}.")
    else:
        click.echo(f"No stored credentials for {credentials.service_url}.")


@click.command()
@service_option
@click.option("--linked-identities", is_flag=True, help="Also show the identities linked to this one.")
@pass_context
def whoami(obj: EndpointContext, service: str | None, linked_identities: bool) -> None:
    """Show the identity the endpoint runs as."""
    credentials = _credentials(obj, service)
    identity = _exit_on_error(credentials.identity)
    kind = "client identity" if credentials.client else "user"
    click.echo(f"Logged in to {credentials.service_url} as {kind} {identity.username} (id {identity.id})")
    if linked_identities:
        others = [linked for linked in identity.linked if linked.id != identity.id]
        click.echo("Linked identities: " + (", ".join(map(str, others)) if others else "none"))
