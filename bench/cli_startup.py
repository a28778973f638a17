"""How long `globus-compute-endpoint list` and `status` take, against a bare Python start.

The target is 0.3 s wall time: users run `list` often, and a slow CLI is what the
official endpoint is known for (it imports everything at start). `status` is timed on a
real running endpoint (a ThreadPoolEngine tree against a compute-service on its embedded
broker, so no RabbitMQ is needed): it reads the file its supervisor keeps current.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUNDS = 15


def wall_times(argv: list[str], env: dict[str, str], rounds: int = ROUNDS) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    script = shutil.which("globus-compute-endpoint", path=str(Path(sys.executable).parent))
    with tempfile.TemporaryDirectory() as base:
        env = dict(os.environ, GLOBUS_COMPUTE_USER_DIR=base)
        for i in range(20):
            subprocess.run([script, "configure", f"ep{i}"], env=env, check=True, stdout=subprocess.DEVNULL)
        cases = {
            "python -c pass (baseline)": [sys.executable, "-c", "pass"],
            "python -c 'import click' (baseline)": [sys.executable, "-c", "import click"],
            "globus-compute-endpoint version": [script, "version"],
            "globus-compute-endpoint list (20 endpoints)": [script, "list"],
            "globus-compute-endpoint status (running)": [script, "status", "running"],
        }
        with running_endpoint(script, Path(base), env) as endpoint_env:
            # Alternate the cases round by round so drift in machine load hits each alike.
            samples: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(ROUNDS):
                for name, argv in cases.items():
                    samples[name] += wall_times(argv, endpoint_env, rounds=1)
    print("\nCLI start-up, wall time over", ROUNDS, "rounds (target: list and status < 0.300 s)")
    print(f"{'command':<46} {'median s':>9} {'max s':>8}")
    for name, times in samples.items():
        print(f"{name:<46} {statistics.median(times):>9.3f} {max(times):>8.3f}")


@contextlib.contextmanager
def running_endpoint(script: str, base: Path, env: dict[str, str]):
    """An endpoint named `running` (ThreadPoolEngine) against a compute-service of its own."""
    bin_dir = Path(script).parent
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = base / "service"
    service = subprocess.Popen([str(bin_dir / "compute-service"), "serve", "--port", str(port), "--data-dir",
                                str(data), "--broker", f"filesystem://{base / 'broker'}", "--log-level", "warning"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint_env = dict(env, GLOBUS_SDK_SERVICE_URL_COMPUTE=f"http://127.0.0.1:{port}")
    try:
        token = subprocess.run([str(bin_dir / "compute-service"), "token", "create", "--identity", "bench",
                                "--data-dir", str(data)], check=True, capture_output=True, text=True).stdout.strip()
        deadline = time.monotonic() + 30
        while subprocess.run([script, "login", "--token", token], env=endpoint_env,
                             capture_output=True).returncode and time.monotonic() < deadline:
            time.sleep(0.2)  # the service is still starting
        subprocess.run([script, "configure", "running"], env=endpoint_env, check=True, stdout=subprocess.DEVNULL)
        (base / "running" / "config.yaml").write_text("engine:\n  type: ThreadPoolEngine\n  max_workers: 2\n")
        subprocess.run([script, "start", "running"], env=endpoint_env, check=True, stdout=subprocess.DEVNULL)
        while not (base / "running" / "status.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        yield endpoint_env
    finally:
        subprocess.run([script, "stop", "running"], env=endpoint_env, capture_output=True)
        service.terminate()
        service.wait(timeout=20)


if __name__ == "__main__":
    main()
