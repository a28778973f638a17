"""A user endpoint's process: the child of a template-capable endpoint's tree that is itself
the supervisor of a classic tree (task link, result link, engine) for one user's options."""

from __future__ import annotations

import os

from ..supervisor.pipe import ParentPipe
from ..workers.logs import setup_logging
from .config import parse_config
from .daemon import Progress
from .manager import UserEndpointLaunch
from .tree import run_tree


def main(parent: ParentPipe, launch: UserEndpointLaunch) -> int:
    os.environ.update(launch.environment)  # user_environment.yaml, for this tree's processes
    setup_logging(launch.settings.log_file, "user-endpoint", launch.settings.debug)
    config = parse_config(launch.config_text, f"the user endpoint {launch.settings.endpoint_name}'s config")
    code, _ = run_tree(launch.settings, config, Progress(None), parent=parent)
    return code
