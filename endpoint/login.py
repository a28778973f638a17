"""The login step, shared by `login` and by `start` when it finds no credentials and has
a terminal to ask at."""

from __future__ import annotations

import click

from .auth import AuthError


def login_step(credentials, token: str | None = None, browser: bool = False, force: bool = False) -> None:
    """What `login` does, and what `start` does first when it has a terminal and no credentials."""
    if credentials.client:
        click.echo(f"Running as client identity {credentials.client[0]} ({credentials.service_url}): "
                   "no login needed; its tokens come from the client credentials.")
        click.echo(f"Client identity: {credentials.identity()}")
        return
    if credentials.is_logged_in() and not force:
        click.echo(f"Already logged in to {credentials.service_url}; pass --force to log in again.")
        return
    if credentials.hosted:
        if token:
            raise click.UsageError("--token is for a local compute-service; the hosted service needs Globus Auth")
        credentials.native_login(show=click.echo, open_browser=browser,
                                 ask_code=lambda: click.prompt("Enter the resulting Authorization Code",
                                                               default="", show_default=False))
    else:
        token = token or click.prompt(f"Token for {credentials.service_url}", hide_input=True)
        credentials.store_service_token(token.strip())
        try:
            credentials.identity()  # a token the service does not know is not kept
        except AuthError:
            credentials.logout()
            raise
    click.echo(f"Logged in to {credentials.service_url} as {credentials.identity()}; "
               f"credentials are stored in {credentials.storage_path}")
