"""GlobusMPIEngine with the SDK's MPIFunction: a real MPI program (MPICH, compiled here) on the
two-node Slurm cluster, submitted through the official SDK's Executor with a
resource_specification per task, as HPC users run it; and on this host alone (LocalProvider),
where the engine gives the pool this host as its one node. Requests the engine cannot honour
get error results that say why."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from globus_compute_sdk import Executor, MPIFunction, ShellFunction

from tests.clusters import cannot_start
from tests.integration.test_shell_functions import run_shell
from tests.sdk import sdk_client

pytestmark = pytest.mark.slow

# Prints one line a rank: "rank R of N on HOST from T0 to T1" (wall-clock seconds), having
# slept the seconds of its first argument, so tests can tell where and when ranks ran.
MPI_PROGRAM = r"""
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <unistd.h>

static double now(void) { struct timeval t; gettimeofday(&t, NULL); return t.tv_sec + t.tv_usec / 1e6; }

int main(int argc, char **argv) {
    int rank, size, length;
    char host[MPI_MAX_PROCESSOR_NAME];
    double began = now();
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Get_processor_name(host, &length);
    if (argc > 1) usleep((useconds_t)(atof(argv[1]) * 1e6));
    MPI_Barrier(MPI_COMM_WORLD);
    printf("rank %d of %d on %s from %.3f to %.3f\n", rank, size, host, began, now());
    MPI_Finalize();
    return 0;
}
"""

MPI_CLUSTER_CONFIG = """\
engine:
  type: GlobusMPIEngine
  mpi_launcher: {launcher}
  max_workers_per_block: {workers}
  heartbeat_period: 2
  heartbeat_threshold: 6
  job_status_kwargs: {{strategy_period: 1, max_idletime: 30}}
  provider:
    type: SlurmProvider
    partition: cluster
    nodes_per_block: 2
    init_blocks: 0
    min_blocks: 0
    max_blocks: 1
    walltime: "00:10:00"
    exclusive: false
    worker_init: source {venv}/bin/activate
"""

MPI_LOCAL_CONFIG = """\
engine:
  type: GlobusMPIEngine
  max_workers_per_block: 1
  job_status_kwargs: {strategy_period: 1, max_idletime: 30}
  provider:
    type: LocalProvider
    init_blocks: 1
    min_blocks: 0
    max_blocks: 1
"""


@pytest.fixture(scope="module")
def mpi_program(tmp_path_factory) -> Path:
    """The program, compiled with MPICH's mpicc where every node sees it (one file system)."""
    if not (shutil.which("mpicc") and shutil.which("mpiexec")):
        cannot_start("MPI is not installed here (mpicc and mpiexec: Debian's mpich and libmpich-dev, "
                     "which .ci/run installs)")
    source = tmp_path_factory.mktemp("mpi") / "ranks.c"
    source.write_text(MPI_PROGRAM)
    program = source.with_suffix("")
    subprocess.run(["mpicc", "-O2", "-o", str(program), str(source)], check=True, capture_output=True)
    return program


def sdk_executor(endpoint, resource_specification: dict | None = None) -> Executor:
    """The official SDK's Executor with its default serialization (MPIFunction and
    ShellFunction go by reference to the SDK's own classes, as they do for users)."""
    import uuid

    client = sdk_client(endpoint.service.url, endpoint.token)
    return Executor(endpoint_id=endpoint.endpoint_id, client=client, task_group_id=uuid.uuid4(),
                    resource_specification=resource_specification)


def ranks(result) -> list[tuple[int, int, str, float, float]]:
    """(rank, size, host, began, ended) per line of the program's output, by rank."""
    rows = []
    for line in result.stdout.splitlines():
        words = line.split()
        if words[:1] == ["rank"]:
            rows.append((int(words[1]), int(words[3]), words[5], float(words[7]), float(words[9])))
    return sorted(rows)


def launched(program: Path, *arguments: object) -> MPIFunction:
    """The program under the engine's launcher prefix; it also says what the prefix was."""
    return MPIFunction(" ".join(map(str, (program, *arguments))) + '; echo "prefix: $PARSL_MPI_PREFIX"')


def prefix(result) -> str:
    return next(line.removeprefix("prefix: ") for line in result.stdout.splitlines() if line.startswith("prefix: "))


def mpi_config(launcher: str = "mpiexec", workers: int = 1) -> str:
    return MPI_CLUSTER_CONFIG.format(launcher=launcher, workers=workers, venv=Path(sys.executable).parent.parent)


EXAMPLE = Path(__file__).parents[2] / "examples" / "configs" / "mpi-slurm.yaml"


def as_tested(example: str) -> str:
    """The README's MPI example with the test cluster's partition and environment."""
    venv = Path(sys.executable).parent.parent
    tested = example.replace("partition: compute", "partition: cluster").replace(
        "worker_init: module load mpich; source ~/venvs/compute/bin/activate",
        f"worker_init: source {venv}/bin/activate")
    assert tested.count("cluster") >= 1 and str(venv) in tested
    return tested


def test_an_mpi_task_runs_one_rank_on_each_of_two_nodes(cluster_endpoint, mpi_program):
    endpoint = cluster_endpoint(config=mpi_config())
    with sdk_executor(endpoint, {"num_nodes": 2, "ranks_per_node": 1}) as executor:
        submitted = time.monotonic()
        first = executor.submit(launched(mpi_program)).result(timeout=180)
        cold_s = time.monotonic() - submitted
        submitted = time.monotonic()
        second = executor.submit(launched(mpi_program)).result(timeout=60)
        warm_s = time.monotonic() - submitted
    for result in (first, second):
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert [(r, size, host) for r, size, host, _, _ in ranks(result)] == [(0, 2, "node1"), (1, 2, "node2")]
        assert prefix(result).startswith("mpiexec -n 2 -ppn 1 -hosts node1,node2")
    print(f"\ntwo-node MPI task, submit to result: {cold_s:.2f} s with the block starting, {warm_s:.2f} s warm")


def test_two_mpi_tasks_share_a_block_by_nodes_and_queue_when_it_is_full(cluster_endpoint, mpi_program):
    """The example config (two workers on a two-node block): two one-node tasks run at once,
    one on each node; two two-node tasks take turns (Parsl's MPI scheduler holds the second
    until nodes are free)."""
    endpoint = cluster_endpoint(config=as_tested(EXAMPLE.read_text()))
    with sdk_executor(endpoint, {"num_nodes": 1, "ranks_per_node": 1}) as executor:
        executor.submit(launched(mpi_program)).result(timeout=180)  # the block is up
        halves = [executor.submit(launched(mpi_program, 3)) for _ in range(2)]
        executor.resource_specification = {"num_nodes": 2, "ranks_per_node": 1}
        wholes = [executor.submit(launched(mpi_program, 2)) for _ in range(2)]
        halves = [ranks(f.result(timeout=120)) for f in halves]
        wholes = [ranks(f.result(timeout=120)) for f in wholes]
    assert sorted(h[0][2] for h in halves) == ["node1", "node2"]  # one node each
    (_, _, _, began_a, ended_a), (_, _, _, began_b, ended_b) = (h[0] for h in halves)
    assert began_a < ended_b and began_b < ended_a, f"the one-node tasks did not overlap: {halves}"
    assert all({host for _, _, host, _, _ in w} == {"node1", "node2"} for w in wholes)
    first, second = sorted(wholes, key=lambda w: w[0][3])
    assert max(r[4] for r in first) <= min(r[3] for r in second), f"the two-node tasks overlapped: {wholes}"


def test_the_srun_launcher_with_launcher_options(cluster_endpoint, mpi_program):
    """mpi_launcher: srun, and the task's launcher_options reaching the command line (MPICH
    needs Slurm's PMI-2 under srun)."""
    endpoint = cluster_endpoint(config=mpi_config(launcher="srun"))
    spec = {"num_nodes": 2, "ranks_per_node": 1, "launcher_options": "--mpi=pmi2"}
    with sdk_executor(endpoint, spec) as executor:
        result = executor.submit(launched(mpi_program)).result(timeout=180)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert [(r, size, host) for r, size, host, _, _ in ranks(result)] == [(0, 2, "node1"), (1, 2, "node2")]
    assert prefix(result) == "srun --ntasks 2 --ntasks-per-node 1 --nodelist node1,node2 --nodes 2 --mpi=pmi2"


def test_requests_the_engine_cannot_honour_get_error_results_that_say_why(cluster_endpoint, mpi_program):
    endpoint = cluster_endpoint(config=mpi_config())
    with sdk_executor(endpoint, {"num_nodes": 3, "ranks_per_node": 1}) as executor:
        too_many = executor.submit(launched(mpi_program))
        executor.resource_specification = {"num_ranks": 2}
        no_nodes = executor.submit(launched(mpi_program))
        executor.resource_specification = {"num_nodes": 1, "gpus": 4}
        unknown = executor.submit(launched(mpi_program))
        executor.resource_specification = None
        plain = executor.submit(launched(mpi_program))
        expected = {too_many: "asks for 3 nodes, but this endpoint's blocks have 2",
                    no_nodes: "needs num_nodes in resource_specification",
                    unknown: "'gpus', which GlobusMPIEngine does not know; accepted: launcher_options, num_nodes",
                    plain: "needs num_nodes in resource_specification"}
        for future, reason in expected.items():
            with pytest.raises(Exception, match=re.escape(reason)):
                future.result(timeout=60)


def test_mpi_and_shell_functions_on_this_host_alone(sdk_endpoint, mpi_program):
    """LocalProvider outside a batch job: the pool's one node is this host."""
    endpoint = sdk_endpoint(MPI_LOCAL_CONFIG)
    with sdk_executor(endpoint, {"num_nodes": 1, "ranks_per_node": 2}) as executor:
        result = executor.submit(launched(mpi_program)).result(timeout=120)
        assert [(r, size) for r, size, *_ in ranks(result)] == [(0, 2), (1, 2)]
        assert {host for _, _, host, _, _ in ranks(result)} == {os.uname().nodename}
        shell = executor.submit(ShellFunction("echo $PARSL_NUM_NODES $PARSL_RANKS_PER_NODE; echo err >&2; exit 3"))
        shell = shell.result(timeout=60)
    assert (shell.returncode, shell.stdout, shell.exception_name) == (3, "1 2\n", "subprocess.CalledProcessError")
    assert shell.stderr.startswith("err\n")
    spec = {"num_nodes": 1}
    timed_out = run_shell(endpoint, ShellFunction("sleep 30", walltime=1), resource_specification=spec)
    assert (timed_out.returncode, timed_out.exception_name) == (124, "subprocess.TimeoutExpired")
