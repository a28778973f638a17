"""A user endpoint's process: the child of a template-capable endpoint's tree that is itself
the supervisor of a classic tree (task link, result link, engine) for one user's options."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..supervisor.pipe import ParentPipe
from ..supervisor.spec import ExitCode
from ..workers.logs import setup_logging
from .config import parse_config
from .daemon import Progress
from .lifecycle import LifecycleError, run_hook
from .tree import run_tree
from .user_launch import UserEndpointLaunch, inherit_allowed_functions

log = logging.getLogger(__name__)


def main(parent: ParentPipe, launch: UserEndpointLaunch) -> int:
    os.environ.update(launch.environment)  # user_environment.yaml, for this tree's processes
    settings = launch.settings
    setup_logging(settings.log_file, "user-endpoint", settings.debug)
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
    code, reason = run_tree(settings, config, Progress(None), parent=parent)
    if code in (ExitCode.CONFIG_ERROR, ExitCode.BOOT_FAILURE):  # one of its children said restarting cannot help
        parent.halt(code, reason or f"exit code {code}")
    if config.endpoint_teardown:
        try:
            run_hook("endpoint_teardown", config.endpoint_teardown, log_file, log.info)
        except LifecycleError as exc:
            log.error("%s", exc)
    return code
