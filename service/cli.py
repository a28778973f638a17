"""The ``compute-service`` command: serve the API, and issue tokens."""

from __future__ import annotations

import os
from pathlib import Path

import click

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def default_data_dir() -> Path:
    env = os.environ.get("COMPUTE_SERVICE_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "compute-service"


def data_dir_option(f):
    return click.option(
        "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=default_data_dir,
        show_default="~/.local/share/compute-service or $COMPUTE_SERVICE_DATA_DIR",
        help="Where the SQLite database (and the embedded broker) live.",
    )(f)


def db_option(f):
    return click.option("--db", "db_url", metavar="URL",
                        help="SQLAlchemy URL, e.g. postgresql://user@host/db [default: SQLite in "
                             "the data dir].")(f)


def open_store(data_dir: Path, db_url: str | None):
    from .store import SchemaError, Store

    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    url = db_url or f"sqlite:///{data_dir / 'service.db'}"
    try:
        return Store(url)
    except SchemaError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # a wrong URL or an unreachable database
        raise click.ClickException(f"cannot open the database {_redact(url)}: {exc}") from None


def _redact(url: str) -> str:
    from ..protocol.urls import redact_url

    return redact_url(url)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def app() -> None:
    """A self-hostable Globus Compute web service for one machine or an air-gapped site."""


@app.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@db_option
@click.option("--broker", "broker_url", metavar="URL", envvar="COMPUTE_SERVICE_BROKER_URL",
              help="AMQP URL of the RabbitMQ the service and its endpoints share, or filesystem:///DIR for "
                   f"the embedded broker. [default: {DEFAULT_BROKER_URL} when it answers, else the embedded "
                   "broker in the data dir]")
@click.option("--public-broker-url", metavar="URL", envvar="COMPUTE_SERVICE_PUBLIC_BROKER_URL",
              help="The broker URL handed to endpoints and SDKs, when it differs from --broker.")
@click.option("--shared-broker-credentials", is_flag=True,
              help="Hand every endpoint the service's own broker credentials, even where RabbitMQ's "
                   "management API answers (by default each endpoint then gets a user of its own).")
@data_dir_option
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def serve(host: str, port: int, db_url: str | None, broker_url: str | None, public_broker_url: str | None,
          shared_broker_credentials: bool, data_dir: Path, log_level: str) -> None:
    """Serve the Compute HTTP API."""
    import logging

    import uvicorn

    from .app import ServiceSettings, create_app

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _hide_secrets_from_ps()

    store = open_store(data_dir, db_url)
    broker_url = choose_broker(broker_url, data_dir)
    settings = ServiceSettings(db_url=str(store.engine.url), broker_url=broker_url,
                               public_broker_url=public_broker_url,
                               endpoint_broker_users=not shared_broker_credentials)
    click.echo(f"compute-service: database {_redact(str(store.engine.url))}, broker "
               f"{_redact(broker_url)}, serving http://{host}:{port}", err=True)
    uvicorn.run(create_app(settings, store), host=host, port=port, log_level=log_level)


def _hide_secrets_from_ps() -> None:
    """Broker URLs given as arguments carry passwords: show ps a title without them.
    ($COMPUTE_SERVICE_BROKER_URL and $COMPUTE_SERVICE_PUBLIC_BROKER_URL keep them out of
    the command line in the first place.)"""
    import sys

    from setproctitle import setproctitle

    from ..protocol.urls import redact_url

    def shown(arg: str) -> str:
        option, equals, value = arg.partition("=")
        return f"{option}={redact_url(value)}" if equals and option.startswith("--") else redact_url(arg)

    setproctitle(" ".join(["compute-service", *(shown(arg) for arg in sys.argv[1:])]))


def choose_broker(url: str | None, data_dir: Path) -> str:
    """The broker asked for, which must answer; else RabbitMQ where it answers; else embedded."""
    from ..protocol.urls import embedded_folder, embedded_url, is_embedded

    if url is None:
        problem = _broker_problem(DEFAULT_BROKER_URL)
        if problem is None:
            return DEFAULT_BROKER_URL
        url = embedded_url((data_dir / "broker").resolve())
        click.echo(f"compute-service: no broker answers at {_redact(DEFAULT_BROKER_URL)} ({problem}); using the "
                   f"embedded broker in {embedded_folder(url)}: endpoints on this machine only, no SDK Executor "
                   "(Client polling works), no delivery guarantee when an endpoint process is killed", err=True)
    if is_embedded(url):
        Path(embedded_folder(url), "control").mkdir(mode=0o700, parents=True, exist_ok=True)
    problem = _broker_problem(url)
    if problem is not None:
        raise click.ClickException(f"the message broker at {_redact(url)} does not answer: {problem}")
    return url


def _broker_problem(url: str) -> str | None:
    from ..protocol.urls import broker_connection

    try:
        with broker_connection(url, connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return None


@app.group()
def token() -> None:
    """Manage the bearer tokens that callers present."""


@token.command("create")
@click.option("--identity", required=True, help="Who the token speaks for (any name).")
@data_dir_option
@db_option
def token_create(identity: str, data_dir: Path, db_url: str | None) -> None:
    """Print a new token for IDENTITY (it is stored hashed; keep it, it is not shown again)."""
    store = open_store(data_dir, db_url)
    click.echo(store.create_token(identity))


@app.group()
def client() -> None:
    """Manage client identities (GLOBUS_COMPUTE_CLIENT_ID / GLOBUS_COMPUTE_CLIENT_SECRET)."""


@client.command("create")
@click.option("--identity", required=True, help="Who the client speaks for (any name).")
@data_dir_option
@db_option
def client_create(identity: str, data_dir: Path, db_url: str | None) -> None:
    """Print a new client id and secret for IDENTITY (the secret is stored hashed; keep it)."""
    store = open_store(data_dir, db_url)
    client_id, secret = store.create_client(identity)
    click.echo(f"GLOBUS_COMPUTE_CLIENT_ID={client_id}\nGLOBUS_COMPUTE_CLIENT_SECRET={secret}")


def main() -> None:
    app(prog_name="compute-service")
