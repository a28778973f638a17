"""GlobusMPIEngine: GlobusComputeEngine on Parsl's MPIExecutor, for multi-node (MPI) tasks,
and what it accepts in a task's resource_specification."""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...protocol.files import write_private_file
from .base import ResourceSpecificationError
from .htex import MPI_SPECIFICATION_KEYS, GlobusComputeEngine, _in_batch_job


class GlobusMPIEngine(GlobusComputeEngine):
    """Parsl's MPIExecutor: one worker pool on the first node of each block (SimpleLauncher)
    gives each task the nodes its resource_specification asks for, and exports the launcher
    prefixes for them (PARSL_MPI_PREFIX, PARSL_MPIEXEC_PREFIX, PARSL_SRUN_PREFIX, ...), from
    which the SDK's MPIFunction builds its command line. A task that names no nodes, or more
    than a block has, is refused here: Parsl would wait for it forever."""

    name = "GlobusMPIEngine"
    executor_class = "MPIExecutor"

    def _provider_options(self, provider: Mapping[str, Any]) -> dict:
        options = dict(provider)
        options.setdefault("launcher", {"type": "SimpleLauncher"})
        if options.get("type", "LocalProvider") == "LocalProvider" and not _in_batch_job():
            # Outside a batch job the pool finds no node list; it gets this host as its one node.
            nodefile = Path(self.run_dir) / "local.nodefile"
            write_private_file(nodefile, socket.gethostname() + "\n")
            options["worker_init"] = f"export PBS_NODEFILE={nodefile}; " + (options.get("worker_init") or "")
        return options

    @property
    def nodes_per_block(self) -> int:
        return int(getattr(self.provider, "nodes_per_block", 1))

    @property
    def capacity(self) -> int:
        # MPIExecutor sets its pools' max_workers_per_node to max_workers_per_block.
        return int(self.htex.max_workers_per_node) * max(1, self.max_blocks)

    def _check_specification(self, spec: dict) -> None:
        problem = mpi_specification_problem(spec, self.nodes_per_block)
        if problem:
            raise ResourceSpecificationError(problem)


def mpi_specification_problem(spec: Mapping[str, Any], nodes_per_block: int) -> str | None:
    """Why GlobusMPIEngine cannot run a task with this resource specification, or None."""
    accepted = ", ".join(sorted(MPI_SPECIFICATION_KEYS))
    unknown = sorted(set(spec) - MPI_SPECIFICATION_KEYS)
    if unknown:
        return f"resource_specification has {', '.join(map(repr, unknown))}, which GlobusMPIEngine does not know; " \
               f"accepted: {accepted}"
    nodes = spec.get("num_nodes")
    if nodes is None:
        return (f"GlobusMPIEngine needs num_nodes in resource_specification (got {json.dumps(dict(spec))}): "
                f"the nodes of a block to run the task on (this endpoint's blocks have {nodes_per_block}); "
                f"accepted keys: {accepted}")
    for key in ("num_nodes", "ranks_per_node", "num_ranks"):
        value = spec.get(key)
        if value is not None and not (type(value) is int and value > 0):
            return f"resource_specification {key}: expected a positive integer, got {value!r}"
    if nodes > nodes_per_block:
        return (f"resource_specification asks for {nodes} nodes, but this endpoint's blocks have "
                f"{nodes_per_block} (the provider's nodes_per_block); a task runs within one block")
    ranks, per_node = spec.get("num_ranks"), spec.get("ranks_per_node")
    if ranks is not None and per_node is not None and ranks != nodes * per_node:
        return (f"resource_specification num_ranks ({ranks}) is not num_nodes ({nodes}) x ranks_per_node "
                f"({per_node})")
    return None
