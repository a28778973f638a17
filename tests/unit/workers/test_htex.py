"""The worker launch command each container type builds (Docker and Apptainer cannot run here)."""

from __future__ import annotations

import pytest

from compute_endpoint.workers.engines.htex import container_launch_cmd
from compute_endpoint.workers.engines.htex_mpi import mpi_specification_problem

LAUNCH = "process_worker_pool.py --max_workers_per_node={max_workers_per_node} -a {addresses}"
RUN_DIR = "/home/u/.globus_compute/ep/engine"


@pytest.mark.parametrize("kind, uri, options, expected", [
    (None, None, None, LAUNCH),
    ("None", None, None, LAUNCH),
    ("docker", "funcx/kube-endpoint:main-3.10", "-v /tmp:/tmp",
     f"docker run -v /tmp:/tmp -v {RUN_DIR}:{RUN_DIR} -t funcx/kube-endpoint:main-3.10 {LAUNCH}"),
    ("podman", "localhost/worker:1", "--userns keep-id",
     f"podman run --userns keep-id -v {RUN_DIR}:{RUN_DIR} -t localhost/worker:1 {LAUNCH}"),
    ("podman-hpc", "worker:1", "--gpu",
     f"podman-hpc run --gpu -v {RUN_DIR}:{RUN_DIR} -t worker:1 {LAUNCH}"),
    ("apptainer", "/images/worker.sif", "--bind /scratch",
     f"apptainer exec --bind /scratch /images/worker.sif {LAUNCH}"),
    ("singularity", "/images/worker.sif", None, f"singularity exec  /images/worker.sif {LAUNCH}"),
    ("custom", None, "podman run -v {EXECUTOR_RUNDIR}:{EXECUTOR_RUNDIR} img {EXECUTOR_LAUNCH_CMD}",
     f"podman run -v {RUN_DIR}:{RUN_DIR} img {LAUNCH}"),
])
def test_launch_command_per_container_type(kind, uri, options, expected):
    built = container_launch_cmd(LAUNCH, RUN_DIR, kind, uri, options)
    assert built == expected
    # HTEX fills the worker's own placeholders afterwards: they must survive the wrapping
    assert "{max_workers_per_node}" in built and "{addresses}" in built


def test_unknown_container_type_is_refused():
    with pytest.raises(ValueError, match="unknown container_type 'lxc'"):
        container_launch_cmd(LAUNCH, RUN_DIR, "lxc", None, None)


@pytest.mark.parametrize("spec, problem", [
    ({"num_nodes": 2, "ranks_per_node": 4}, None),
    ({"num_nodes": 1, "num_ranks": 3, "launcher_options": "--cpu-bind=core"}, None),
    ({"num_nodes": 2, "ranks_per_node": 2, "num_ranks": 4}, None),
    ({}, "GlobusMPIEngine needs num_nodes in resource_specification (got {}): the nodes of a block to run the "
         "task on (this endpoint's blocks have 2); accepted keys: launcher_options, num_nodes, num_ranks, "
         "ranks_per_node"),
    ({"num_ranks": 4}, "needs num_nodes"),
    ({"num_nodes": 3}, "asks for 3 nodes, but this endpoint's blocks have 2 (the provider's nodes_per_block)"),
    ({"num_nodes": 1, "priority": 1}, "has 'priority', which GlobusMPIEngine does not know"),
    ({"num_nodes": "2"}, "num_nodes: expected a positive integer, got '2'"),
    ({"num_nodes": 1, "ranks_per_node": 0}, "ranks_per_node: expected a positive integer, got 0"),
    ({"num_nodes": 2, "ranks_per_node": 2, "num_ranks": 5}, "num_ranks (5) is not num_nodes (2) x ranks_per_node (2)"),
])
def test_mpi_resource_specifications_are_checked_before_parsl_sees_them(spec, problem):
    found = mpi_specification_problem(spec, nodes_per_block=2)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
