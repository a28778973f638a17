"""Parsl without the optional packages it imports but this endpoint never uses.

``import parsl`` imports, when installed, the Globus Compute SDK (for Parsl's
GlobusComputeExecutor, and with it globus-sdk, pika and pydantic) and SQLAlchemy (for
Parsl's monitoring database): about 40 MB in each process that imports Parsl, the engine
and the HTEX interchange. Parsl treats both as optional, and neither process uses them
(tasks run in the worker pools, which import what the tasks need), so they are left out
there: a ``None`` in ``sys.modules`` makes their import fail as if they were not installed.

    python -m compute_endpoint.workers.lean_parsl     Parsl's HTEX interchange, so left out
"""

from __future__ import annotations

import runpy
import sys

UNUSED_BY_THE_ENGINE = ("globus_compute_sdk", "sqlalchemy")


def leave_out_unused_extras() -> None:
    """Call before Parsl is imported; a package some code here imported already stays."""
    for name in UNUSED_BY_THE_ENGINE:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def interchange_launch_cmd() -> list[str]:
    return [sys.executable, "-m", __name__]


if __name__ == "__main__":
    leave_out_unused_extras()
    runpy.run_module("parsl.executors.high_throughput.interchange", run_name="__main__", alter_sys=True)
