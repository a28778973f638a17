"""A user endpoint's process: the child of a template-capable endpoint's tree that is itself
the supervisor of a classic tree (task link, result link, engine) for one user's options."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from setproctitle import setproctitle

from ..supervisor.pipe import ParentPipe
from ..supervisor.spec import ExitCode
from ..workers.logs import setup_logging
from .config import parse_config
from .daemon import Progress
from .lifecycle import LifecycleError, run_hook
from .run_as import PamRefused, PamSession, become
from .tree import run_tree
from .user_launch import UserEndpointLaunch, inherit_allowed_functions, make_user_endpoint_dirs

log = logging.getLogger(__name__)


def main(parent: ParentPipe, launch: UserEndpointLaunch) -> int:
    settings = launch.settings
    session = None
    if launch.run_as is not None:  # a multi-user endpoint's: nothing of the user's runs before this
        try:
            session = _become_user(launch)
        except (OSError, PamRefused) as exc:
            return parent.halt(ExitCode.CONFIG_ERROR, f"cannot run as {launch.run_as.name}: {exc}")
    else:
        os.environ.update(launch.environment)  # user_environment.yaml, for this tree's processes
    setup_logging(settings.log_file, "user-endpoint", settings.debug)
    try:
        return _run(parent, launch)
    finally:
        if session is not None:
            session.close()


def _become_user(launch: UserEndpointLaunch):
    """PAM's session (as root), then the drop; its directory made as the user, and stdout and
    stderr pointed at its own log, so nothing of the user's reaches the manager's."""
    assert launch.run_as is not None
    # Its title now: setproctitle takes its room from the environment, which the drop replaces.
    setproctitle(launch.settings.title)
    session = PamSession(launch.run_as, launch.pam_service) if launch.pam_service else None
    become(launch.run_as, launch.environment)
    make_user_endpoint_dirs(Path(launch.settings.run_dir), Path(launch.settings.log_file))
    log_descriptor = os.open(launch.settings.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(log_descriptor, 1)
    os.dup2(log_descriptor, 2)
    os.close(log_descriptor)
    return session


def _run(parent: ParentPipe, launch: UserEndpointLaunch) -> int:
    settings = launch.settings
    # As the official's: the user endpoint works in user_environment.yaml's CWD, else the
    # account's home, and tells its processes where that is.
    working_dir = os.path.expanduser(os.environ.get("CWD") or "~")
    try:
        os.chdir(working_dir)
    except OSError as exc:
        log.error("cannot work in %s (CWD): %s", working_dir, exc)
        return parent.halt(ExitCode.CONFIG_ERROR, f"cannot work in {working_dir} (CWD): {exc.strerror}")
    os.environ["CWD"] = os.getcwd()
    config = inherit_allowed_functions(
        parse_config(launch.config_text, f"the user endpoint {settings.endpoint_name}'s config"),
        launch.allowed_functions)
    log_file = Path(settings.log_file)
    try:
        if config.endpoint_setup:
            run_hook("endpoint_setup", config.endpoint_setup, log_file, log.info)
    except LifecycleError as exc:
        log.error("%s", exc)
        return parent.halt(ExitCode.CONFIG_ERROR, str(exc))  # its own config is wrong: restarting cannot help
    code, reason = run_tree(settings, config, Progress(None), parent=parent, audited=launch.audit)
    if code in (ExitCode.CONFIG_ERROR, ExitCode.BOOT_FAILURE):  # one of its children said restarting cannot help
        parent.halt(code, reason or f"exit code {code}")
    if config.endpoint_teardown:
        try:
            run_hook("endpoint_teardown", config.endpoint_teardown, log_file, log.info)
        except LifecycleError as exc:
            log.error("%s", exc)
    return code
