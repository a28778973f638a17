"""`make demo`: the main job end to end, as far as it is built.

Today that is the endpoint's local side: configure an endpoint in a scratch directory
and list it. Starting it (service, supervisor tree, functions run) is not built yet,
and this demo says so rather than pretend.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
CLI = shutil.which("globus-compute-endpoint", path=str(BIN)) or "globus-compute-endpoint"


def step(title: str, *argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    print(f"\n==> {title}\n$ {' '.join(['globus-compute-endpoint', *argv])}", flush=True)
    result = subprocess.run([CLI, *argv], env=env, text=True, capture_output=True)
    print(result.stdout + result.stderr, end="", flush=True)
    return result


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="compute-endpoint-demo-") as base:
        env = dict(os.environ, GLOBUS_COMPUTE_USER_DIR=base)
        print(f"demo: endpoints live in {base} for this run")
        step("version", "version", env=env)
        if step("configure an endpoint", "configure", "demo_endpoint", env=env).returncode:
            return 1
        print(Path(base, "demo_endpoint", "config.yaml").read_text(), end="")
        step("list endpoints", "list", env=env)
        started = step("start it", "start", "demo_endpoint", env=env)
        if started.returncode:
            print("\ndemo: stopping here. The local service and the supervisor tree that run "
                  "functions are not built yet; nothing was submitted and no result is shown.")
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
