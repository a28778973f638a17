"""GlobusComputeEngine: Parsl's HighThroughputExecutor (HTEX) with a provider from the config.

Imported only when the config names this engine: Parsl is heavy. The interchange that
HTEX starts shows as ``parsl: HTEX interchange`` under the engine process; worker pools
run where the provider puts them (local processes, or batch jobs), and run
``execution.run_task`` there.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...protocol.files import write_private_file
from ..addresses import host_addresses, resolve_address
from ..execution import UNKNOWN_TASK_FAILURE, error_result, run_task_in, run_tasks_in
from ..payloads import Payload, load
from ..pipe_messages import TaskDelivery, TaskResult
from ..task_marks import Mark, TaskMarkReader
from . import lean_parsl
from .base import NO_SPECIFICATION, Done, ResourceSpecificationError, Started, ignore_start
from .chunks import ChunkedSubmission, ChunkProgress, over_time_limit, report_outcome

if TYPE_CHECKING:
    from parsl.executors import HighThroughputExecutor

log = logging.getLogger(__name__)

# How often the engine reads its workers' task marks: often while chunks run (each task's
# result leaves through them as it ends), seldom otherwise (only starts come then).
MARKS_EVERY_S_CHUNKS = 0.01
MARKS_EVERY_S = 0.2
# What a multi-node (MPI) task asks for: GlobusMPIEngine's (htex_mpi.py), refused by GlobusComputeEngine.
MPI_SPECIFICATION_KEYS = frozenset(("num_nodes", "ranks_per_node", "num_ranks", "launcher_options"))

UNENCRYPTED_WARNING = (
    "encrypted: false: tasks and results (function code, arguments and return values) travel between "
    "the interchange and the worker pools in the clear, and anyone who can reach the interchange's "
    "ports from the network may connect as a worker pool and receive tasks; remove 'encrypted: false' "
    "unless every host on that network is trusted")


def build_parsl_object(module: str, spec: Mapping[str, Any]) -> Any:
    """A Parsl provider or launcher from ``{type: Name, option: value, ...}``."""
    options = dict(spec)
    kind = options.pop("type")
    if isinstance(options.get("launcher"), Mapping):
        options["launcher"] = build_parsl_object("parsl.launchers", options["launcher"])
    return getattr(importlib.import_module(module), kind)(**options)


def container_launch_cmd(launch_cmd: str, run_dir: str, container_type: str | None, uri: str | None,
                         options: str | None) -> str:
    """Wrap the worker launch command in the configured container."""
    options = options or ""
    if container_type in (None, "None"):
        return launch_cmd
    if container_type in ("docker", "podman", "podman-hpc"):
        return f"{container_type} run {options} -v {run_dir}:{run_dir} -t {uri} {launch_cmd}"
    if container_type in ("apptainer", "singularity"):
        return f"{container_type} exec {options} {uri} {launch_cmd}"
    if container_type == "custom":
        return options.replace("{EXECUTOR_RUNDIR}", run_dir).replace("{EXECUTOR_LAUNCH_CMD}", launch_cmd)
    raise ValueError(f"unknown container_type {container_type!r}")


class GlobusComputeEngine(ChunkedSubmission):
    """Tasks through an HTEX interchange to worker pools that the provider starts.

    Options that are not this engine's own go to HighThroughputExecutor unchanged (the
    config checked them against its signature)."""

    name = "GlobusComputeEngine"
    executor_class = "HighThroughputExecutor"

    def __init__(self, endpoint_id: str, *, provider: Mapping[str, Any], label: str | None,
                 address: str | Mapping[str, Any] | None, encrypted: bool, strategy: str | None,
                 run_in_sandbox: bool, working_dir: str, worker_port_range: tuple[int, int] | None,
                 interchange_port_range: tuple[int, int] | None,
                 job_status_kwargs: Mapping[str, float], container_type: str | None, container_uri: str | None,
                 container_cmd_options: str | None, run_dir: str = ".", on_start: Started = ignore_start,
                 task_timeout_s: float | None = None, **executor_options: Any):
        """Built from the engine's block of config.yaml (endpoint.tree.engine_options), where
        every option's default is declared; none is repeated here."""
        lean_parsl.leave_out_unused_extras()
        import parsl.executors
        from parsl.jobs.job_status_poller import JobStatusPoller

        self.endpoint_id = endpoint_id
        # Worker pools are started by a shell that must find process_worker_pool.py
        # and this package: put this interpreter's bin first on its PATH.
        bin_dir = str(Path(sys.executable).parent)
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
        self.run_dir = str(Path(run_dir) / "engine")
        os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
        self.provider = build_parsl_object("parsl.providers", self._provider_options(provider))
        self.working_dir = str(Path(run_dir) / working_dir)
        self.run_in_sandbox = run_in_sandbox
        self._blocks_file = Path(self.run_dir) / "blocks.json"
        self._cancel_blocks_left_behind()
        self.time_limit_s = task_timeout_s
        self._begin_task_marks(on_start)
        named = resolve_address(address)
        if not encrypted:
            log.warning(UNENCRYPTED_WARNING)
        kwargs: dict[str, Any] = dict(
            executor_options, label=label or "GlobusComputeEngine", provider=self.provider,
            # A placeholder when no address is named: HTEX would otherwise ask a public web
            # service for our address while it is built. Replaced below.
            address=named or "127.0.0.1", encrypted=encrypted,
        )
        if "available_accelerators" in kwargs and kwargs["available_accelerators"] is None:
            kwargs["available_accelerators"] = ()
        if worker_port_range:
            kwargs["worker_port_range"] = tuple(worker_port_range)
        if interchange_port_range:
            kwargs["interchange_port_range"] = tuple(interchange_port_range)
        self.htex: HighThroughputExecutor = getattr(parsl.executors, self.executor_class)(**kwargs)
        if "interchange_launch_cmd" not in executor_options:
            # Set after building: MPIExecutor's signature types it as one string, which Popen
            # would take for a program's name.
            self.htex.interchange_launch_cmd = lean_parsl.interchange_launch_cmd()
        self._place(named is None, encrypted)
        self.htex.launch_cmd = container_launch_cmd(self.htex.launch_cmd, self.run_dir, container_type,
                                                    container_uri, container_cmd_options)
        self.htex.start()
        self.poller = JobStatusPoller(strategy=strategy or "none",
                                      max_idletime=float(job_status_kwargs["max_idletime"]),
                                      strategy_period=float(job_status_kwargs["strategy_period"]))
        self.poller.add_executors([self.htex])
        self.outstanding = 0
        self.min_blocks = getattr(self.provider, "min_blocks", 0)
        self.max_blocks = getattr(self.provider, "max_blocks", 1)
        self._recorded_jobs: list[str] = []

    def _provider_options(self, provider: Mapping[str, Any]) -> dict:
        return dict(provider)

    def _begin_task_marks(self, on_start: Started) -> None:
        """Workers (on any node: the endpoint directory is shared) mark each task as it starts,
        as a task of a chunk ends, and as it runs over its time limit; a thread acts on the
        marks (task_marks.py). Marks a dead engine left are stale."""
        self.marks_dir = str(Path(self.run_dir) / "marks")
        shutil.rmtree(self.marks_dir, ignore_errors=True)
        os.makedirs(self.marks_dir, mode=0o700, exist_ok=True)
        self._tracked: dict[str, tuple[ChunkProgress, Done]] = {}  # task id: its call's progress, until settled
        self._tracked_lock = threading.Lock()
        self._chunked_tracked = 0
        # Calls that failed, settled by the marks thread once it has read what their workers marked.
        self._failed_calls: queue.SimpleQueue = queue.SimpleQueue()
        self._watching_marks = True
        threading.Thread(target=self._watch_marks, args=(on_start,), name="task-marks", daemon=True).start()

    def _track(self, progress: ChunkProgress, done: Done) -> None:
        progress.settled = functools.partial(self._untrack, progress)
        with self._tracked_lock:
            for task in progress.tasks:
                self._tracked[task.task_id] = (progress, done)
            if len(progress.tasks) > 1:
                self._chunked_tracked += len(progress.tasks)

    def _untrack(self, progress: ChunkProgress, task_id: str) -> None:
        with self._tracked_lock:
            tracked = self._tracked.get(task_id)
            if tracked is not None and tracked[0] is progress:
                del self._tracked[task_id]
                if len(progress.tasks) > 1:
                    self._chunked_tracked -= 1

    def _place(self, on_every_address: bool, encrypted: bool) -> None:
        """Where the interchange listens and keeps its files, before it starts."""
        if on_every_address:
            # The interchange listens on every interface (address None) and each worker
            # pool tries every address of this host, as on a cluster it must.
            self.htex.address = None
            self.htex.all_addresses = set(host_addresses())
        log.info("worker pools will connect to %s (%s)", ", ".join(sorted(self.htex.all_addresses)),
                 "encrypted with CurveZMQ" if encrypted else "NOT encrypted")
        self.htex.run_dir = self.run_dir
        self.provider.script_dir = os.path.join(self.run_dir, "submit_scripts")
        os.makedirs(self.provider.script_dir, mode=0o700, exist_ok=True)

    @property
    def capacity(self) -> int:
        workers = self.htex.max_workers_per_node
        per_node = workers if workers and workers != float("inf") else (os.cpu_count() or 1)
        return int(per_node * max(1, self.max_blocks) * getattr(self.provider, "nodes_per_block", 1))

    def submit(self, task: TaskDelivery, done: Done) -> None:
        self.outstanding += 1
        progress = ChunkProgress((task,))
        self._track(progress, done)
        try:
            spec = _resource_specification(task.headers.get("resource_specification"))
            self._check_specification(spec)
            future = self.htex.submit(run_task_in, spec, self.working_dir, self.run_in_sandbox, task.task_id,
                                      _carried(task.body), task.headers.get("result_serializers"), self.endpoint_id,
                                      self.marks_dir, self.time_limit_s)
        except Exception as exc:  # e.g. an unsupported resource_specification
            self.outstanding -= 1
            progress.report(done, TaskResult(task.task_id, error_result(
                task.task_id, UNKNOWN_TASK_FAILURE, f"The engine refused the task: {exc}",
                endpoint_id=self.endpoint_id)))
            return
        future.add_done_callback(functools.partial(self._finished, progress, done=done))

    def _check_specification(self, spec: dict) -> None:
        if set(spec) & MPI_SPECIFICATION_KEYS:
            raise ResourceSpecificationError(
                f"{self.name} runs single-node tasks and takes only 'priority' in resource_specification "
                f"(got {json.dumps(spec)}); multi-node (MPI) tasks need engine type GlobusMPIEngine")

    def _submit_chunk(self, progress: ChunkProgress, done: Done) -> Future:
        self._track(progress, done)
        arguments = [(t.task_id, _carried(t.body), t.headers.get("result_serializers")) for t in progress.tasks]
        return self.htex.submit(run_tasks_in, {}, self.working_dir, self.run_in_sandbox, arguments,
                                self.endpoint_id, self.marks_dir, self.time_limit_s)

    def _finished(self, progress: ChunkProgress, future: Future, done: Done) -> None:
        self.outstanding -= 1
        if future.cancelled() or future.exception() is None:
            report_outcome(progress.tasks[0].task_id, future, functools.partial(progress.report, done),
                           self.endpoint_id)
        else:
            self._failed_calls.put((progress, future, done))

    def _chunk_finished(self, progress: ChunkProgress, future: Future, done: Done) -> None:
        self.outstanding -= len(progress.tasks)
        if future.cancelled() or future.exception() is None:
            self._settle_chunk(progress, future, done)  # the results the workers marked come by the marks
        else:
            self._failed_calls.put((progress, future, done))

    def status(self) -> dict:
        blocks = len(self.htex.blocks_to_job_id) if hasattr(self.htex, "blocks_to_job_id") else None
        connected = None
        if self.failure() is None:  # asking a dead interchange would wait forever
            try:
                connected = self.htex.connected_workers  # type: ignore[attr-defined]
            except Exception:  # the interchange may be busy; figures are best effort
                pass
        return {"engine_type": self.name, "outstanding_tasks": self.outstanding, "total_workers": connected,
                "scaling_enabled": True, "min_blocks": self.min_blocks, "max_blocks": self.max_blocks,
                "max_workers_per_node": self.htex.max_workers_per_node, "blocks": blocks,
                "nodes_per_block": getattr(self.provider, "nodes_per_block", 1)}

    def failure(self) -> str | None:
        """Why this engine can no longer run tasks (its interchange is gone), or None.
        Called often: it also keeps the record of this engine's batch jobs current."""
        self._record_blocks()
        interchange = self.htex.interchange_proc
        if interchange is not None and interchange.poll() is not None:
            return f"the HTEX interchange (pid {interchange.pid}) exited with code {interchange.returncode}"
        if self.htex.bad_state_is_set:
            return f"the HTEX executor failed: {self.htex.executor_exception!r}"
        return None

    def abandon(self) -> None:
        """Give up after a failure: cancel this engine's batch jobs, whose pools would
        otherwise hold nodes for a dead interchange."""
        self._cancel_jobs(list(self.htex.blocks_to_job_id.values()), "of this engine")
        self._blocks_file.unlink(missing_ok=True)

    def _watch_marks(self, on_start: Started) -> None:
        reader = TaskMarkReader(self.marks_dir)
        while self._watching_marks:
            failed = []  # taken before the read: what their workers marked before dying is read first
            while not self._failed_calls.empty():
                failed.append(self._failed_calls.get())
            try:
                for mark in reader.read():
                    self._act_on(mark, on_start)
            except (OSError, ValueError) as exc:
                log.warning("reading the workers' task marks: %s", exc)
            for progress, future, done in failed:
                self._settle_failed_call(progress, future, done)
            time.sleep(MARKS_EVERY_S_CHUNKS if self._chunked_tracked else MARKS_EVERY_S)

    def _act_on(self, mark: Mark, on_start: Started) -> None:
        with self._tracked_lock:
            progress, done = self._tracked.get(mark.task_id, (None, None))
        if mark.kind == "started":
            on_start(mark.task_id)
            if progress is not None:
                progress.started.add(mark.task_id)
        elif progress is None or done is None:
            return  # settled already (a result the call returned as well, say)
        elif mark.kind == "finished":
            progress.report(done, TaskResult(mark.task_id, mark.packed))
        elif mark.kind == "overdue":
            progress.report(done, TaskResult(mark.task_id, over_time_limit(
                mark.task_id, self.time_limit_s or 0, self.endpoint_id,
                "its worker killed itself, and Parsl starts a new one")))

    def _settle_failed_call(self, progress: ChunkProgress, future: Future, done: Done) -> None:
        if len(progress.tasks) == 1:  # a task of its own (a chunk has more: submit_many)
            report_outcome(progress.tasks[0].task_id, future, functools.partial(progress.report, done),
                           self.endpoint_id)
        else:
            self._settle_chunk(progress, future, done)

    def shutdown(self, cancel_pending: bool) -> None:
        self._watching_marks = False
        try:
            self.poller.close()
        finally:
            self.htex.shutdown()
            self._blocks_file.unlink(missing_ok=True)

    # A batch job outlives an engine killed with SIGKILL: the next engine cancels it.
    def _record_blocks(self) -> None:
        jobs = [str(j) for j in self.htex.blocks_to_job_id.values()]
        if jobs != self._recorded_jobs and self._is_batch_provider():
            self._recorded_jobs = jobs
            write_private_file(self._blocks_file, json.dumps({"provider": type(self.provider).__name__,
                                                              "jobs": jobs}))

    def _cancel_blocks_left_behind(self) -> None:
        try:
            record = json.loads(self._blocks_file.read_text())
        except (OSError, ValueError):
            return
        if record.get("provider") == type(self.provider).__name__ and self._is_batch_provider():
            self._cancel_jobs(list(record.get("jobs", [])), "left by the previous engine")
        self._blocks_file.unlink(missing_ok=True)

    def _cancel_jobs(self, jobs: list[str], whose: str) -> None:
        if not jobs:
            return
        # Parsl's cluster providers note the new state of each job they cancel in their own
        # table, which knows only the jobs this provider submitted: enter the others first.
        from parsl.jobs.states import JobState, JobStatus

        unknown = [j for j in jobs if j not in self.provider.resources]
        for job in unknown:
            self.provider.resources[job] = {"job_id": job, "status": JobStatus(JobState.UNKNOWN)}
        try:
            cancelled = self.provider.cancel(jobs)
            if cancelled and all(cancelled):
                log.info("cancelled the batch jobs %s: %s", whose, ", ".join(jobs))
            else:
                log.warning("the scheduler did not cancel the batch jobs %s: %s", whose, ", ".join(jobs))
        except Exception as exc:  # the scheduler may be unreachable; the jobs end at their walltime
            log.warning("could not cancel the batch jobs %s (%s): %r", whose, ", ".join(jobs), exc)
        finally:
            for job in unknown:
                self.provider.resources.pop(job, None)

    def _is_batch_provider(self) -> bool:
        # LocalProvider's job ids are process ids: after a crash they may name another
        # process, and its pools end by themselves when the interchange is gone.
        return type(self.provider).__name__ != "LocalProvider"


def _in_batch_job() -> bool:
    return bool(os.environ.get("SLURM_NODELIST") or os.environ.get("PBS_NODEFILE"))


def _carried(body: Payload) -> Payload:
    """The bytes of a body kept in a file here: workers on other nodes cannot read it. (Should
    it be gone, the reference goes, and the worker answers that it cannot read it.)"""
    try:
        return load(body)
    except OSError:
        return body


def _resource_specification(text: object) -> dict:
    if text in NO_SPECIFICATION:
        return {}
    if isinstance(text, dict):
        return text
    import json

    value = json.loads(str(text))
    return value if isinstance(value, dict) else {}
