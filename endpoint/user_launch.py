"""What a user endpoint's process is given by its manager (manager.py): its settings and
rendered config, its environment, where its files go, and the functions it may run."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import attrs

from ..protocol import commands
from ..workers.settings import WorkerSettings
from .config import ConfigError, ConfigProblem
from .identity_map import LocalUser

VARIABLE = re.compile(r"\$(?:(\w+)|\{(\w+)\})")


@attrs.frozen
class UserEndpointLaunch:
    """What a user endpoint's process is given: a classic tree's settings, its rendered
    config, and the environment variables of user_environment.yaml."""

    settings: WorkerSettings
    config_text: str
    environment: dict[str, str]
    allowed_functions: tuple[str, ...] | None = None  # its manager's: the config may narrow them only
    # A multi-user endpoint's: the local user it runs as (run_as.py), and PAM's service for its session.
    run_as: LocalUser | None = None
    pam_service: str | None = None
    audit: bool = False  # tell the manager each task's events, for its audit log (audit.py)


def user_endpoint_environment(command: commands.StartUserEndpoint, configured: dict[str, str]) -> dict[str, str]:
    """A user endpoint's environment variables, as the official sets them: user_environment.yaml's,
    then (unless that file set them) its name and the Python and SDK versions the user runs."""
    environment = dict(configured)
    environment.setdefault("GLOBUS_COMPUTE_ENDPOINT_NAME", command.name)
    python = (command.user_runtime.get("python") or {}) if isinstance(command.user_runtime, dict) else {}
    if isinstance(python, dict) and isinstance(python.get("version"), str):
        environment.setdefault("GC_USER_PYTHON_VERSION", python["version"])
    sdk = command.user_runtime.get("globus_compute_sdk_version") if isinstance(command.user_runtime, dict) else None
    if isinstance(sdk, str):
        environment.setdefault("GC_USER_SDK_VERSION", sdk)
    return environment


def user_endpoint_paths(default_dir: Path, config, environment: dict[str, str], make: bool = True,
                        inherited: Mapping[str, str] | None = None) -> tuple[Path, Path]:
    """(directory, log file) of a user endpoint: its config's paths, else $GLOBUS_COMPUTE_ENDPOINT_DIR
    and $GLOBUS_COMPUTE_LOG_PATH (user_environment.yaml's, else the endpoint's own), else
    default_dir and endpoint.log in it; ~ and $VARS expanded. Both made (0700) unless ``make``
    is false (a multi-user endpoint's user makes them, once it is that user), and the final
    values put in the environment, as the official does. ``inherited``: the environment it
    starts from (this process's, unless it runs as another user)."""
    seen = {**(os.environ if inherited is None else inherited), **environment}
    paths = config.paths

    def chosen(own: str | None, variable: str) -> Path | None:
        value = own or seen.get(variable)
        if not value:
            return None
        # $VAR and ${VAR} from the user endpoint's own environment (os.path.expandvars sees ours only)
        expanded = VARIABLE.sub(lambda m: seen.get(m.group(1) or m.group(2), m.group(0)), value)
        if expanded == "~" or expanded.startswith("~/"):  # its HOME, which may be another user's
            expanded = seen.get("HOME", "~") + expanded[1:]
        return Path(expanded).expanduser().absolute()

    directory = chosen(paths.endpoint_dir if paths else None, "GLOBUS_COMPUTE_ENDPOINT_DIR") or default_dir
    log_file = chosen(paths.endpoint_log if paths else None, "GLOBUS_COMPUTE_LOG_PATH") or directory / "endpoint.log"
    if log_file.is_dir():
        raise ConfigError(str(log_file), [ConfigProblem(("paths", "endpoint_log"), "is a directory, not a file")])
    if make:
        make_user_endpoint_dirs(directory, log_file)
    environment["GLOBUS_COMPUTE_ENDPOINT_DIR"], environment["GLOBUS_COMPUTE_LOG_PATH"] = str(directory), str(log_file)
    return directory, log_file


def make_user_endpoint_dirs(directory: Path, log_file: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)


def inherit_allowed_functions(config, allowed: tuple[str, ...] | None):
    """A user endpoint runs no function its manager does not allow: the template may narrow
    the manager's allowed_functions, never widen them."""
    if allowed is None:
        return config
    own = config.allowed_functions
    narrowed = [f for f in allowed if own is None or f in own]
    return attrs.evolve(config, allowed_functions=narrowed)
