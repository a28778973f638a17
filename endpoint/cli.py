"""The ``globus-compute-endpoint`` command.

Only click and small modules are imported here; each command imports what it needs
when it runs, so that ``globus-compute-endpoint list`` answers at once.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import click

from .directory import EndpointDirectory, EndpointDirectoryError, default_base_dir, validate_name
from .exit_codes import Exit


class EndpointContext:
    """What every command needs: where endpoints live, and how to log."""

    def __init__(self, base_dir: Path, debug: bool = False, log_to_console: bool = False, no_color: bool = False):
        self.base_dir = base_dir
        self.debug = debug
        self.log_to_console = log_to_console
        self.no_color = no_color  # our console lines have no colour; accepted as the official's are

    def directory(self, name: str) -> EndpointDirectory:
        try:
            return EndpointDirectory(self.base_dir, validate_name(name))
        except EndpointDirectoryError as exc:
            raise click.BadParameter(str(exc), param_hint="NAME") from None

    def existing(self, name_or_uuid: str) -> EndpointDirectory:
        """The endpoint directory named so, or the one registered with that endpoint UUID."""
        endpoint_id = _as_uuid(name_or_uuid)
        if endpoint_id is not None:
            found = self.by_endpoint_id(endpoint_id)
            if found is None:
                raise click.ClickException(
                    f"No endpoint on this machine has the ID {endpoint_id} (looked in {self.base_dir}); "
                    "`globus-compute-endpoint list` shows the IDs of those here.")
            return found
        directory = self.directory(name_or_uuid)
        if not directory.exists():
            import difflib

            known = [p.name for p in self.base_dir.iterdir() if (p / "config.yaml").exists()] \
                if self.base_dir.is_dir() else []
            close = difflib.get_close_matches(name_or_uuid, known, n=1)
            hint = f"did you mean {close[0]!r}? Or create it" if close else "create it"
            raise click.ClickException(
                f"Endpoint {name_or_uuid!r} is not configured in {self.base_dir}; "
                f"{hint} with: globus-compute-endpoint configure {name_or_uuid}"
            )
        return directory

    def by_endpoint_id(self, endpoint_id: uuid.UUID) -> EndpointDirectory | None:
        from .directory import list_endpoint_dirs

        return next((d for d in list_endpoint_dirs(self.base_dir) if d.read_endpoint_id() == endpoint_id), None)


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _set_log_flag(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        setattr(ctx.find_object(EndpointContext), str(param.name), True)


def logging_options(command):
    """--debug, --log-to-console and --no-color: on the group and on every command, as the
    official endpoint takes them (``start my_ep --debug`` as well as ``--debug start my_ep``)."""
    for flag, help_text in (("--no-color", "Do not colour console log lines (they never are here)."),
                            ("--log-to-console", "Also write log lines to the terminal (with --foreground; "
                                                 "a daemon's log is endpoint.log)."),
                            ("--debug", "Log at DEBUG level.")):
        command = click.option(flag, is_flag=True, expose_value=False, is_eager=True, callback=_set_log_flag,
                               help=help_text)(command)
    return command


pass_context = click.make_pass_decorator(EndpointContext)
name_argument = click.argument("name", default="default", metavar="NAME")
# Commands on an endpoint that exists take its name or its endpoint UUID, as the official's do.
name_or_uuid_argument = click.argument("name", default="default", metavar="NAME|UUID")


class LazyGroup(click.Group):
    """Click's lazily loading group (its documentation's recipe): the commands of other modules
    are imported only when one of them runs or help lists them, so `list` stays fast and those
    modules import this one without a cycle."""

    def __init__(self, *args, lazy_subcommands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = lazy_subcommands or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy_subcommands])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_subcommands:
            import importlib

            module, _, name = self.lazy_subcommands[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), name)
            if not any(param.name == "debug" for param in command.params):
                logging_options(command)
            return command
        return super().get_command(ctx, cmd_name)


LAZY_COMMANDS = {
    "configure": "compute_endpoint.endpoint.cli_configure:configure",
    "login": "compute_endpoint.endpoint.cli_credentials:login",
    "logout": "compute_endpoint.endpoint.cli_credentials:logout",
    "whoami": "compute_endpoint.endpoint.cli_credentials:whoami",
    "enable-on-boot": "compute_endpoint.endpoint.cli_boot:enable_on_boot",
    "disable-on-boot": "compute_endpoint.endpoint.cli_boot:disable_on_boot",
    "migrate-to-template-capable": "compute_endpoint.endpoint.cli_templates:migrate_to_template_capable",
    "render-user-config": "compute_endpoint.endpoint.cli_templates:render_user_config",
}


@click.group(cls=LazyGroup, lazy_subcommands=LAZY_COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"], "terminal_width": 100})
@click.option(
    "-c", "--config-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="GLOBUS_COMPUTE_USER_DIR",
    help="Where endpoint directories live [default: ~/.globus_compute; env GLOBUS_COMPUTE_USER_DIR].",
)
@click.option("--debug", is_flag=True, help="Log at DEBUG level.")
@click.option("--log-to-console", is_flag=True, help="Also write log lines to the terminal (with --foreground).")
@click.option("--no-color", is_flag=True, help="Do not colour console log lines (they never are here).")
@click.pass_context
def app(ctx: click.Context, config_dir: Path | None, debug: bool, log_to_console: bool, no_color: bool) -> None:
    """Run Python functions sent by a Globus Compute service on this machine."""
    base_dir = (config_dir or default_base_dir()).expanduser().absolute()
    # As the official: the folder of endpoints is made (0700) if it is not there, and a file
    # in its place is an error.
    if base_dir.is_file():
        raise click.ClickException(f"{base_dir} is a file, not a folder of endpoints: move it away or give "
                                   "another with -c DIR")
    if not base_dir.exists():
        try:
            base_dir.mkdir(mode=0o700, parents=True)
        except OSError as exc:
            raise click.ClickException(f"cannot create the folder of endpoints {base_dir}: {exc.strerror}") from None
    ctx.obj = EndpointContext(base_dir, debug, log_to_console, no_color)


@app.command()
def version() -> None:
    """Print the endpoint's version."""
    from .version import OFFICIAL_VERSION, __version__

    click.echo(f"Globus Compute endpoint version: {OFFICIAL_VERSION} (compute-endpoint {__version__}, a drop-in "
               f"for the official {OFFICIAL_VERSION.rsplit('.', 1)[0]} line)")


@app.command("python-exec", context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
             short_help="Run a Python module with this endpoint's Python.")
@click.argument("module")
@click.pass_context
def python_exec(ctx: click.Context, module: str) -> None:
    """Run the Python module MODULE as a script with the endpoint's own Python, passing on the
    rest of the arguments (the official's worker and interchange launch commands call it, so
    site configs written for them run here)."""
    os.execvpe(sys.executable, [sys.executable, "-m", module, *ctx.args], os.environ)


@app.command(short_help="Show a running endpoint's tree, or why it stopped.")
@name_or_uuid_argument
@click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
@click.option("--tasks", "list_tasks", is_flag=True,
              help="List the tasks in flight instead: id, function, state, since when (the oldest 1,000).")
@pass_context
def status(obj: EndpointContext, name: str, as_json: bool, list_tasks: bool) -> None:
    """Show the endpoint NAME (or UUID): its state; while it runs, each child (pid, state, for how
    long, restarts, broker connection), the tasks in flight and done, the engine's figures and
    the last status report, as the supervisor wrote them a moment ago; else why it stopped."""
    from .status_view import gather, render, render_tasks

    view = gather(obj.existing(name))
    if as_json:
        import json

        shown = {"name": view["name"], "endpoint_id": view["endpoint_id"], "state": view["state"],
                 "tasks_in_flight": (view["tree"] or {}).get("tasks_in_flight", [])} if list_tasks else view
        click.echo(json.dumps(shown, indent=2, default=str))
    else:
        click.echo(render_tasks(view) if list_tasks else render(view))


@app.command("list")
@pass_context
def list_endpoints(obj: EndpointContext) -> None:
    """List the endpoints on this machine with their state."""
    from texttable import Texttable

    from .directory import list_endpoint_dirs
    from .status import EndpointState, endpoint_status, stop_note
    from .status_board import user_endpoints_of

    directories = list_endpoint_dirs(obj.base_dir)
    statuses = [endpoint_status(d) for d in directories]
    if not statuses:
        click.echo("No endpoints configured!")
        return
    table = Texttable(max_width=0)
    table.header(["Endpoint ID", "Status", "Endpoint Name"])
    table.set_cols_dtype(["t", "t", "t"])
    for directory, status in zip(directories, statuses, strict=True):
        table.add_row([str(status.endpoint_id), status.label, status.name])
        if status.state is EndpointState.RUNNING:
            for name, child in user_endpoints_of(directory).items():  # a template-capable endpoint's
                table.add_row([str(child.get("endpoint_id")), str(child.get("state", "?")).capitalize(),
                               f"{status.name}/{name}"])
    click.echo(table.draw())
    for directory, status in zip(directories, statuses, strict=True):
        note = stop_note(directory) if status.state is EndpointState.STOPPED else None
        if note:
            click.echo(f"{status.name}: {note}")


@app.command(short_help="Delete an endpoint, at the service and here.")
@name_or_uuid_argument
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True,
              help="Stop the endpoint first if it is running; delete the directory even when the service "
                   "cannot delete the endpoint.")
@pass_context
def delete(obj: EndpointContext, name: str, yes: bool, force: bool) -> None:
    """Delete the endpoint NAME (or UUID): from the Compute service, then its directory and
    everything in it. An UUID with no directory here is deleted at the service only."""
    from .status import EndpointState, endpoint_status

    endpoint_id = _as_uuid(name)
    if endpoint_id is not None and obj.by_endpoint_id(endpoint_id) is None:
        if not yes:
            click.confirm(f"Delete endpoint {endpoint_id} from the Compute service? It has no directory here.",
                          abort=True)
        _delete_at_service_only(obj, endpoint_id)
        return
    directory = obj.existing(name)
    status = endpoint_status(directory)
    if status.state is EndpointState.RUNNING and not force:
        raise click.ClickException(
            f"Endpoint {directory.name!r} is running (pid {status.pid}); stop it first, or pass --force "
            "to stop and delete it."
        )
    registered = directory.read_endpoint_id()
    if not yes:
        at_service = f" from the Compute service (ID {registered})" if registered else ""
        click.confirm(f"Delete endpoint {directory.name!r}{at_service} and all of {directory.path}?", abort=True)
    from .remote import delete_endpoint

    _exit_on_error(lambda: delete_endpoint(directory, click.echo, force))


def _delete_at_service_only(obj: EndpointContext, endpoint_id: uuid.UUID) -> None:
    from .cli_credentials import _credentials
    from .remote import delete_registration
    from .service_client import ServiceClient, ServiceError

    credentials = _credentials(obj, None)
    try:
        delete_registration(ServiceClient(credentials.service_url, _exit_on_error(credentials.compute_token)),
                            endpoint_id, click.echo)
    except ServiceError as exc:
        click.echo(f"Error: could not delete endpoint {endpoint_id}: {exc}", err=True)
        sys.exit(exc.exit_code)


def _exit_on_error(run):
    """Turn a failed step (start, stop, login, whoami...) into a clear message and its exit code."""
    from .config import ConfigError
    from .errors import EndpointError

    try:
        return run()
    except EndpointError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(Exit.CONFIG)


@app.command(short_help="Register and start an endpoint (as a daemon).")
@name_or_uuid_argument
@click.option("--foreground", is_flag=True, help="Stay attached to the terminal (for systemd and debugging).")
@click.option("--detach", is_flag=True, help="Run as a daemon (what start does anyway; the official's option).")
@click.option("--endpoint-uuid", metavar="UUID", help="Register with this endpoint UUID (first start only).")
@click.option("--die-with-parent", is_flag=True, hidden=True,
              help="Run in the foreground and stop when the process that started this one ends (the official's "
                   "internal flag, for a program that runs the endpoint as its child).")
@pass_context
def start(obj: EndpointContext, name: str, foreground: bool, detach: bool, endpoint_uuid: str | None,
          die_with_parent: bool) -> None:
    """Register the endpoint NAME (or UUID) with the Compute service, then run it as a daemon
    (in the foreground when systemd started it, or with --foreground)."""
    from .systemd import started_by_systemd

    if foreground and detach:
        raise click.UsageError("--foreground and --detach contradict each other: choose one")
    if die_with_parent:
        if sys.stdin is not None and sys.stdin.isatty():
            raise click.ClickException("The --die-with-parent flag is not meant for manual use; it is for a "
                                       "program that runs the endpoint as its child.")
        from ..supervisor.pipe import die_with_parent as follow_parent

        follow_parent()  # SIGTERM when it goes: the supervisor stops its tree as for systemd's stop
        foreground = True
    # systemd supervises the process it started: a daemon would leave it behind, and the unit stopped.
    foreground = foreground or (started_by_systemd() and not detach)
    directory = obj.existing(name)
    sys.exit(_start(obj, directory, foreground, _checked_uuid(endpoint_uuid)))


def _start(obj: EndpointContext, directory: EndpointDirectory, foreground: bool,
           endpoint_uuid: uuid.UUID | None = None) -> int:
    from .lifecycle import StartOptions
    from .lifecycle import start as start_endpoint

    options = StartOptions(foreground=foreground, debug=obj.debug, log_to_console=obj.log_to_console,
                           endpoint_uuid=endpoint_uuid)
    return _exit_on_error(lambda: start_endpoint(directory, click.echo, options))


def _checked_uuid(value: str | None) -> uuid.UUID | None:
    if value is None:
        return None
    found = _as_uuid(value)
    if found is None:
        raise click.BadParameter(f"{value!r} is not a UUID", param_hint="--endpoint-uuid")
    return found


@app.command(short_help="Stop a running endpoint.")
@name_or_uuid_argument
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait before killing what is left.")
@click.option("--remote", is_flag=True,
              help="Also ask the Compute service to stop the endpoint wherever it runs (another host too).")
@pass_context
def stop(obj: EndpointContext, name: str, timeout: float, remote: bool) -> None:
    """Stop the running endpoint NAME or UUID (SIGTERM, then kill after the timeout)."""
    from .lifecycle import stop as stop_endpoint

    directory = obj.existing(name)
    if remote:
        from .remote import stop_remotely

        _exit_on_error(lambda: stop_remotely(directory, click.echo))
    _exit_on_error(lambda: stop_endpoint(directory, click.echo, timeout))


@app.command(short_help="Stop an endpoint if it runs, then start it.")
@name_or_uuid_argument
@click.option("--detach", is_flag=True, help="Run as a daemon (what restart does anyway).")
@click.option("--endpoint-uuid", metavar="UUID", help="Register with this endpoint UUID (first start only).")
@pass_context
def restart(obj: EndpointContext, name: str, detach: bool, endpoint_uuid: str | None) -> None:
    """Stop the endpoint NAME (or UUID) if it runs, then start it."""
    from .lifecycle import stop as stop_endpoint

    directory = obj.existing(name)
    checked = _checked_uuid(endpoint_uuid)
    _exit_on_error(lambda: stop_endpoint(directory, click.echo))
    sys.exit(_start(obj, directory, False, checked))



# Every command takes the logging flags, as the official's do; but python-exec, whose
# arguments all belong to the module it runs. (The lazy ones get them as they load.)
for _name, _command in app.commands.items():
    if _name != "python-exec":
        logging_options(_command)


def main() -> None:
    _hide_token_from_ps(sys.argv)
    app(prog_name="globus-compute-endpoint")


def _hide_token_from_ps(argv: list[str]) -> None:
    """A token given as `--token VALUE` is in the command line that every user's ps shows:
    rewrite this process's title without it, first thing."""
    if not any(arg == "--token" or arg.startswith("--token=") for arg in argv):
        return
    from setproctitle import setproctitle

    shown, hide_next = [], False
    for arg in argv:
        shown.append("***" if hide_next else "--token=***" if arg.startswith("--token=") else arg)
        hide_next = arg == "--token"
    setproctitle(" ".join(["globus-compute-endpoint", *shown[1:]]))


if __name__ == "__main__":
    main()
