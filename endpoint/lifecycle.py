"""Starting and stopping an endpoint: the steps behind `start`, `stop` and `restart`.

Each step says what it does, and a failure names the step and what to do about it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from .directory import EndpointDirectory, EndpointDirectoryError
from .errors import LifecycleError
from .exit_codes import Exit
from .preflight import check_broker, check_engine_address, check_multi_user
from .processes import StopError, clean_up_unclean_stop, kill_all, leftover_processes, stop_process
from .status import EndpointState, endpoint_status

DEFAULT_STOP_TIMEOUT_S = 30.0
START_PROGRESS_TIMEOUT_S = 120.0
TAIL_LINES = 15

Echo = Callable[[str], None]
log = logging.getLogger(__name__)


def run_hook(kind: str, script: str, log_file: Path, echo: Echo) -> None:
    """Run endpoint_setup / endpoint_teardown in a shell, output appended to the log."""
    echo(f"Running {kind} ...")
    with open(log_file, "ab") as log_out:
        log_out.write(f"----- {kind} -----\n".encode())
        log_out.flush()
        result = subprocess.run(["/bin/sh", "-c", script], stdout=log_out, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        log_out.write(result.stderr)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.decode(errors="replace").splitlines()[-TAIL_LINES:])
        raise LifecycleError(f"{kind} failed with exit status {result.returncode}"
                             + (f":\n{tail}" if tail else "") + f"\n(full output in {log_file})",
                             exit_code=result.returncode)


def log_tail(log_file: Path, lines: int = TAIL_LINES) -> str:
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------- start


@attrs.frozen
class StartOptions:
    foreground: bool = False  # run the tree here instead of in a daemon
    debug: bool = False
    log_to_console: bool = False  # the supervisor's log lines on stderr too (foreground only)
    endpoint_uuid: uuid.UUID | None = None  # register with this id when it has none yet


@attrs.frozen
class StartPlan:
    """What the start steps work out, one step at a time, for the tree to run. Made in a
    throwaway process and handed back through a pipe: it holds no token."""

    directory: EndpointDirectory
    options: StartOptions
    template_capable: bool  # a manager of user endpoints (manager.py), not a classic tree
    config: Any
    config_text: str
    identity: Any = None  # who is logged in and registers it
    service_url: str = ""
    settings: Any = None  # the tree's: WorkerSettings or ManagerSettings

    @property
    def debug(self) -> bool:
        return self.options.debug or self.config.debug  # --debug, or the config's debug: true


def start(directory: EndpointDirectory, echo: Echo, options: StartOptions = StartOptions()) -> int:
    """Start the endpoint: check, authenticate, register, spawn. Returns the exit code for the
    CLI (after the run, when in the foreground)."""
    from ..supervisor.throwaway import in_throwaway_process

    try:  # before anything in it is read or run: another user's file could run commands as you
        directory.refuse_untrusted()
    except EndpointDirectoryError as exc:
        raise LifecycleError(str(exc), exit_code=Exit.CONFIG) from None
    # This process becomes the supervisor, which needs neither Parsl (to check a
    # GlobusComputeEngine config) nor an HTTP client (to register): the steps before the
    # tree run in a throwaway child, and what they import stays there.
    plan = in_throwaway_process(_prepare, directory, echo, options)
    return _spawn(plan, echo, _tree_body(plan))


def _prepare(directory: EndpointDirectory, echo: Echo, options: StartOptions) -> StartPlan:
    """The plan, checked, authenticated and registered, with the broker answering."""
    plan = _checked(directory, options, echo)
    plan, token = _authenticated(plan, echo)
    return _registered(plan, token, echo)


def _tree_body(plan: StartPlan) -> TreeBody:
    if plan.template_capable:
        from .manager import run_manager_tree

        owner = plan.directory.read_owner()
        owner_id = str(owner["id"]) if owner else None
        return lambda progress: run_manager_tree(plan.settings, plan.config, plan.directory.path, owner_id,
                                                 progress, plan.debug)
    from .tree import run_tree

    return lambda progress: run_tree(plan.settings, plan.config, progress, debug_flag=plan.options.debug)


def _check_not_running(directory: EndpointDirectory, echo: Echo) -> None:
    status = endpoint_status(directory)
    if status.state is EndpointState.RUNNING:
        raise LifecycleError(f"Endpoint {directory.name} is already running (pid {status.pid}).")
    if status.other_host:
        raise LifecycleError(
            f"Endpoint {directory.name} was started on host {status.other_host} (pid {status.pid}). Stop it "
            f"there; if it does not run there any more, remove {directory.pid_file} and start again.")
    if status.state is EndpointState.DISCONNECTED:
        clean_up_unclean_stop(directory, echo)


def _checked(directory: EndpointDirectory, options: StartOptions, echo: Echo) -> StartPlan:
    """Not running already; the config loads; endpoint_setup ran."""
    from .templates import is_template_capable

    _check_not_running(directory, echo)
    if is_template_capable(directory.path):
        return _checked_manager(directory, options)
    from .config import parse_config, read_config_text

    config_text = read_config_text(directory.config_file)
    config = parse_config(config_text, str(directory.config_file))
    check_engine_address(config, directory)
    directory.log_file.touch(mode=0o600)
    if config.endpoint_setup:
        run_hook("endpoint_setup", config.endpoint_setup, directory.log_file, echo)
    for warning in directory.loose_permissions():
        echo(f"Warning: {warning}")
    if config.heartbeat_period < config.effective_heartbeat_period:
        echo(f"Note: heartbeat_period {config.heartbeat_period:g} is below the minimum; using "
             f"{config.effective_heartbeat_period:g} s")
    return StartPlan(directory, options, False, config, config_text)


def _checked_manager(directory: EndpointDirectory, options: StartOptions) -> StartPlan:
    """A template-capable endpoint's config.yaml, and its template and schema as trusted as it."""
    from .config import parse_manager_config, read_config_text
    from .manager_start import identity_mapping_path
    from .templates import schema_file, template_file

    # As the official reads it: no config.yaml, or an empty one, is a manager with defaults.
    config_text = read_config_text(directory.config_file) if directory.config_file.exists() else ""
    config = parse_manager_config(config_text, str(directory.config_file))
    mapping = identity_mapping_path(directory.path, config)
    try:  # before any of them is read
        directory.refuse_untrusted(template_file(directory.path, config.user_config_template_path),
                                   schema_file(directory.path, config.user_config_schema_path),
                                   *([mapping] if mapping else []))
    except EndpointDirectoryError as exc:
        raise LifecycleError(str(exc), exit_code=Exit.CONFIG) from None
    if mapping is not None:
        check_multi_user(directory, mapping)
    directory.log_file.touch(mode=0o600)
    return StartPlan(directory, options, True, config, config_text)


def _authenticated(plan: StartPlan, echo: Echo) -> tuple[StartPlan, str]:
    """The plan with who is logged in (who must be who registered it), and their token."""
    from .auth import AuthError

    directory = plan.directory
    try:
        credentials = credentials_for(directory, plan.config)
        token, identity = _credentials_for_start(credentials, echo)
    except AuthError as exc:
        raise LifecycleError(str(exc), exit_code=exc.exit_code) from None
    owner = directory.read_owner()
    if owner and owner["id"] != identity.id:
        raise LifecycleError(
            f"Endpoint {directory.name} was registered by {owner.get('username')} ({owner['id']}); it cannot be "
            f"run by {identity}, who is logged in now. Log in as {owner.get('username')}, or configure a new "
            "endpoint for this identity.", exit_code=Exit.NO_PERMISSION)
    return attrs.evolve(plan, identity=identity, service_url=credentials.service_url), token


def credentials_for(directory: EndpointDirectory, config=None):
    """The credentials for the service this endpoint's config names."""
    from .auth import Credentials
    from .config import load_config
    from .service_urls import environment_name, service_url

    config = config or load_config(directory.config_file)
    return Credentials(directory.base, service_url(config.environment, config.local_compute_services),
                       environment_name(config.environment, config.local_compute_services))


def _registered(plan: StartPlan, token: str, echo: Echo) -> StartPlan:
    """Register with the service and check its broker answers; then record the endpoint's id.
    The plan gains the settings of the tree to start."""
    from .service_client import ServiceClient, ServiceError

    directory, config = plan.directory, plan.config
    metadata = None
    if plan.template_capable:
        from .manager_start import registration_metadata

        metadata = registration_metadata(directory.path, config)
    echo(f"Registering with the Compute service at {plan.service_url} as {plan.identity} ...")
    try:
        registration = ServiceClient(plan.service_url, token).register(
            directory.name, _endpoint_id_to_register(directory, plan.options), config.display_name,
            plan.config_text, config.registration_fields(), metadata)
    except ServiceError as exc:
        raise LifecycleError(f"Registration failed: {exc}", exc.exit_code) from None
    debug = plan.debug
    settings: Any
    if plan.template_capable:
        from .manager_start import manager_settings

        settings = manager_settings(directory, config, registration, debug)
        broker_url, queue = settings.command_url, settings.command_queue
    else:
        from .tree import worker_settings

        settings = worker_settings(directory.name, directory.path, directory.log_file, config, plan.config_text,
                                   registration, debug)
        broker_url, queue = settings.task_queue_url, settings.task_queue
    check_broker(broker_url, queue, config.amqp_port, echo)
    _record_registration(directory, registration, plan.identity, echo)
    return attrs.evolve(plan, settings=settings)


def _record_registration(directory: EndpointDirectory, registration: dict, identity, echo: Echo) -> None:
    """Recorded only once the broker answered: an endpoint that could not start is not listed
    as one that ran."""
    endpoint_id = registration["endpoint_id"]
    owner = directory.read_owner()
    directory.write_endpoint_id(_uuid(endpoint_id), owner or {"id": identity.id, "username": identity.username})
    echo(f"Starting endpoint; registered ID: {endpoint_id}")


def _endpoint_id_to_register(directory: EndpointDirectory, options: StartOptions) -> uuid.UUID | None:
    known = directory.read_endpoint_id()
    if options.endpoint_uuid and known and options.endpoint_uuid != known:
        raise LifecycleError(f"Endpoint {directory.name} is registered as {known}; --endpoint-uuid "
                             f"{options.endpoint_uuid} cannot change that (configure a new endpoint for a new ID).",
                             exit_code=Exit.USAGE)
    return known or options.endpoint_uuid


# Runs the tree, told how to report start-up progress: (exit code, why it stopped).
TreeBody = Callable[[Any], tuple[int, "str | None"]]


def _spawn(plan: StartPlan, echo: Echo, body: TreeBody) -> int:
    """Run the tree here (foreground), or in a daemon, waiting for its start-up progress."""
    directory, options = plan.directory, plan.options
    run = _Run(directory, options, getattr(plan.config, "endpoint_teardown", None), plan.debug, body)
    if options.foreground:
        return run(fd=None, echo=echo)
    from .daemon import daemonize, read_progress

    is_foreground, fd = daemonize(str(directory.log_file))
    if is_foreground:
        if read_progress(fd, echo, START_PROGRESS_TIMEOUT_S):
            return 0
        raise LifecycleError(f"Endpoint {directory.name} stopped while starting; the end of its log "
                             f"({directory.log_file}):\n{log_tail(directory.log_file)}", exit_code=Exit.FAILED)
    code = 1
    try:
        code = run(fd=fd, echo=None)
    except BaseException:
        traceback.print_exc()  # stderr is the log now
    finally:
        os._exit(code)


def _credentials_for_start(credentials, echo: Echo):
    """The token and who it speaks for. With no credentials, log in first, as the official
    start does: the Globus Auth link at once; where there is no terminal to paste the code
    back into, how to finish (``login``), and stop."""
    import sys

    from .auth import NotLoggedIn

    try:
        return credentials.compute_token(), credentials.identity()
    except NotLoggedIn as not_logged_in:
        if not sys.stdin.isatty():
            if credentials.hosted and not credentials.client:
                why = str(not_logged_in)

                def no_terminal() -> str:
                    raise NotLoggedIn(f"{why} No terminal to read the authorization code from here: "
                                      "run `globus-compute-endpoint login` where you can paste it, then start "
                                      "again.")
                credentials.native_login(show=echo, ask_code=no_terminal)
            raise not_logged_in from None
    from .login import login_step

    echo("No stored credentials; logging in first.")
    login_step(credentials)
    return credentials.compute_token(), credentials.identity()


def _uuid(value: str) -> uuid.UUID:
    return uuid.UUID(str(value))


@attrs.frozen
class _Run:
    """The daemon (or --foreground) body: pid file, logging, the tree, teardown."""

    directory: EndpointDirectory
    options: StartOptions
    teardown: str | None
    debug: bool
    body: TreeBody

    def __call__(self, fd: int | None, echo: Echo | None) -> int:
        from ..workers.logs import setup_logging
        from .daemon import Progress, own_pid_record

        directory = self.directory
        directory.write_pid_record(own_pid_record())
        directory.forget_last_stop()
        setup_logging(str(directory.log_file), "supervisor", self.debug,
                      to_console=self.options.foreground and self.options.log_to_console)
        from .systemd import Notifier

        notifier = Notifier.take_from_environment()  # systemd's socket is ours alone: no child inherits it
        code, reason = self.body(Progress(fd, echo, notifier if self.options.foreground else None))
        directory.write_last_stop(reason or f"exit code {code}", code)
        if self.teardown:
            try:
                run_hook("endpoint_teardown", self.teardown, directory.log_file, log.info)
            except LifecycleError as exc:
                log.error("%s", exc)
        if code == 0:
            directory.remove_pid_file()  # a clean stop: Stopped, not Disconnected
        return code


# ---------------------------------------------------------------- stop


def stop(directory: EndpointDirectory, echo: Echo, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
    status = endpoint_status(directory)
    if status.other_host:
        raise StopError(f"Endpoint {directory.name} runs on host {status.other_host} (pid {status.pid}); "
                        "stop it there.")
    if status.state is EndpointState.DISCONNECTED:
        clean_up_unclean_stop(directory, echo)
        echo(f"Endpoint <{directory.name}> is now stopped")
        return
    if status.state is not EndpointState.RUNNING:
        echo(f"Endpoint <{directory.name}> is not running")
        return
    assert status.pid is not None  # a running endpoint has one
    echo(f"Stopping endpoint {directory.name} (pid {status.pid}) ...")
    stopped_by_itself = stop_process(status.pid, timeout_s, echo)
    leftovers = leftover_processes(directory)
    if leftovers:
        echo(f"Killing {len(leftovers)} leftover process(es) of the endpoint")
        kill_all(leftovers)
    if not stopped_by_itself:
        # The daemon was killed before its own teardown: run it here.
        from .config import load_config

        config = load_config(directory.config_file)
        if config.endpoint_teardown:
            run_hook("endpoint_teardown", config.endpoint_teardown, directory.log_file, echo)
    directory.remove_pid_file()
    echo(f"Endpoint <{directory.name}> is now stopped")

