"""`make bench`: run every benchmark and print its table.

    python -m bench                 everything
    python -m bench side_by_side    one of: cli_startup, engines, side_by_side, memory
"""

from __future__ import annotations

import os
import sys

from . import cli_startup, engines, memory, quiet_sdk_logs, side_by_side

BENCHMARKS = {"cli_startup": cli_startup.main, "engines": engines.main, "side_by_side": side_by_side.main,
              "memory": memory.main}


def main(names: list[str]) -> None:
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark {', '.join(unknown)}; accepted: {', '.join(BENCHMARKS)}")
    quiet_sdk_logs()
    for name in names or BENCHMARKS:
        BENCHMARKS[name]()
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK Executor's result watcher thread outlives its executors, retrying the
    # service the bench has stopped: leave without waiting for it.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
