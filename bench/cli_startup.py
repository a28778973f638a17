"""How long `globus-compute-endpoint list` takes, against a bare Python start.

The target is 0.3 s wall time: users run `list` often, and a slow CLI is what the
official endpoint is known for (it imports everything at start).
"""

from __future__ import annotations

import os
import shutil
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
        }
        # Alternate the cases round by round so drift in machine load hits each alike.
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(ROUNDS):
            for name, argv in cases.items():
                samples[name] += wall_times(argv, env, rounds=1)
    print("\nCLI start-up, wall time over", ROUNDS, "rounds (target: list < 0.300 s)")
    print(f"{'command':<46} {'median s':>9} {'max s':>8}")
    for name, times in samples.items():
        print(f"{name:<46} {statistics.median(times):>9.3f} {max(times):>8.3f}")


if __name__ == "__main__":
    main()
