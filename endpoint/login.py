"""The login step, shared by `login` and by `start` when it finds no credentials and has
a terminal to ask at."""

from __future__ import annotations

import sys

import click

from .auth import AuthError, NotLoggedIn


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
        if not token and sys.stdin.isatty():
            token = click.prompt(f"Token for {credentials.service_url}", hide_input=True)
        elif not token:  # no terminal: a token piped in is read; nothing at all is an error that says how
            token = sys.stdin.readline().strip()
            if not token:
                raise click.UsageError(
                    "no terminal to ask for the token: give it with --token -, reading it from standard input, "
                    "or in $COMPUTE_SERVICE_TOKEN (compute-service token create --identity NAME issues one)")
        # The new token replaces the stored one only once the service has accepted it.
        try:
            identity = credentials.identity_of_service_token(token.strip())
        except NotLoggedIn:
            kept = " The credentials stored before are kept." if credentials.is_logged_in() else ""
            raise AuthError(f"{credentials.service_url} does not accept this token (unknown, revoked or expired): "
                            f"nothing was stored.{kept} `compute-service token create --identity NAME` issues "
                            "one.") from None
        credentials.store_service_token(token.strip())
        click.echo(f"Logged in to {credentials.service_url} as {identity}; "
                   f"credentials are stored in {credentials.storage_path}")
        return
    click.echo(f"Logged in to {credentials.service_url} as {credentials.identity()}; "
               f"credentials are stored in {credentials.storage_path}")
