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
              help="Hand every endpoint and SDK client the service's own broker credentials instead of a "
                   "broker user of its own (which needs RabbitMQ's management API). Any of them can then "
                   "read and publish everyone's tasks and results: only for a machine whose only user is you.")
@click.option("--management-url", metavar="URL", envvar="COMPUTE_SERVICE_MANAGEMENT_URL",
              help="RabbitMQ's management API, where the service makes a broker user for each endpoint and "
                   "SDK client [default: http://BROKER-HOST:15672].")
@click.option("--max-tasks-per-submit", type=click.IntRange(1), default=10_000, show_default=True,
              help="Refuse a submit of more tasks (413) rather than hold them all in one request.")
@click.option("--reclaim-user-endpoints-after", "reclaim_after_s", type=click.FloatRange(min=1),
              default=86_400, show_default=True, metavar="SECONDS",
              help="Delete the queues, broker user and record of a user endpoint (one a template-capable "
                   "endpoint starts for a set of options) that nobody has submitted to, that has not reported "
                   "and that is owed no task for this long; the next submit with its options registers it again.")
@data_dir_option
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def serve(host: str, port: int, db_url: str | None, broker_url: str | None, public_broker_url: str | None,
          shared_broker_credentials: bool, management_url: str | None, max_tasks_per_submit: int,
          reclaim_after_s: float, data_dir: Path, log_level: str) -> None:
    """Serve the Compute HTTP API."""
    import logging

    import uvicorn

    from .app import create_app
    from .settings import ServiceConfigError, ServiceSettings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _hide_secrets_from_ps()

    store = open_store(data_dir, db_url)
    serving_lock = _sole_server_of(store)  # noqa: F841 (held until the process ends)
    broker_url = choose_broker(broker_url, data_dir)
    settings = ServiceSettings(db_url=str(store.engine.url), broker_url=broker_url,
                               public_broker_url=public_broker_url,
                               endpoint_broker_users=not shared_broker_credentials,
                               max_tasks_per_submit=max_tasks_per_submit, management_url=management_url,
                               reclaim_user_endpoints_after_s=reclaim_after_s)
    try:
        application = create_app(settings, store)
    except ServiceConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"compute-service: database {_redact(str(store.engine.url))}, broker "
               f"{_redact(broker_url)}, serving http://{host}:{port}", err=True)
    uvicorn.run(application, host=host, port=port, log_level=log_level)


def _sole_server_of(store):
    """On SQLite, the one service of its database file: replicas need PostgreSQL (SQLite
    allows one writer at a time, and its row locks do not make two services forward each
    result once). An open file holding an exclusive lock, kept for the life of the process."""
    import fcntl

    database = store.engine.url.database
    if store.engine.dialect.name != "sqlite" or not database:
        return None
    lock = open(f"{database}.serving", "a")  # noqa: SIM115
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise click.ClickException(
            f"another compute-service already serves the SQLite database {database}; to run replicas of "
            "the service, give them all one PostgreSQL database (--db postgresql://...) and one RabbitMQ "
            "vhost") from None
    return lock


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
        _private_folder(Path(embedded_folder(url)))
        Path(embedded_folder(url), "control").mkdir(mode=0o700, parents=True, exist_ok=True)
    problem = _broker_problem(url)
    if problem is not None:
        raise click.ClickException(f"the message broker at {_redact(url)} does not answer: {problem}")
    return url


def _private_folder(folder: Path) -> None:
    """The embedded broker's folder holds every task and result: made 0700, and refused when
    another user owns it or others may write to it (they could read or plant messages)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.geteuid():
        raise click.ClickException(f"the embedded broker's folder {folder} belongs to another user "
                                   f"(uid {info.st_uid}); use a folder of your own (--data-dir or --broker)")
    if info.st_mode & 0o022:
        raise click.ClickException(f"the embedded broker's folder {folder} is one that others may write to "
                                   f"(mode {info.st_mode & 0o777:o}); run chmod 700 {folder}, or use another folder")
    if info.st_mode & 0o077:
        folder.chmod(0o700)


def _broker_problem(url: str) -> str | None:
    from ..broker.connection import broker_connection

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
@click.option("--lifetime", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Expire the token after this many seconds [default: valid until revoked].")
@data_dir_option
@db_option
def token_create(identity: str, lifetime: float | None, data_dir: Path, db_url: str | None) -> None:
    """Print a new token for IDENTITY (it is stored hashed; keep it, it is not shown again)."""
    store = open_store(data_dir, db_url)
    click.echo(store.create_token(identity, lifetime_s=lifetime))


@token.command("list")
@click.option("--identity", help="Only this identity's tokens.")
@data_dir_option
@db_option
def token_list(identity: str | None, data_dir: Path, db_url: str | None) -> None:
    """List tokens by id (the start of their hash: tokens themselves are never stored)."""
    import time

    rows = open_store(data_dir, db_url).list_tokens(identity)
    click.echo(f"{'ID':<14}{'IDENTITY':<24}{'CREATED':<22}EXPIRES")
    for row in rows:
        expires = "never" if row.expires is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.expires))
        if row.expires is not None and row.expires < time.time():
            expires += " (expired)"
        click.echo(f"{row.token_sha256[:12]:<14}{row.identity:<24}"
                   f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(row.created)):<22}{expires}")


@token.command("revoke")
@click.argument("token_id")
@data_dir_option
@db_option
def token_revoke(token_id: str, data_dir: Path, db_url: str | None) -> None:
    """Revoke the token whose id (from `token list`) is TOKEN_ID: it stops working at once."""
    try:
        count = open_store(data_dir, db_url).revoke_token(token_id.lower())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="TOKEN_ID") from None
    if not count:
        raise click.ClickException(f"no token has the id {token_id}; `compute-service token list` shows them")
    click.echo(f"Revoked {count} token(s).")


@app.group(short_help="Manage client identities.")
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
