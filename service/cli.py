"""The ``compute-service`` command."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def app() -> None:
    """A self-hostable Globus Compute web service for one machine or an air-gapped site."""


@app.command()
def serve() -> None:
    """Serve the Compute HTTP API (not available yet)."""
    raise click.ClickException("'serve' is not available in this version of compute-endpoint yet.")


def main() -> None:
    app(prog_name="compute-service")
