"""Run a real endpoint (the CLI, its daemon and its tree) against a real compute-service."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import psutil
import requests
from globus_compute_sdk.serialize import ComputeSerializer, PureSourceDill

from .conftest import BIN_DIR, RunningService

# Test functions live in test modules, which the endpoint cannot import: send their
# source, as a user's notebook function would be sent.
SERIALIZER = ComputeSerializer(strategy_code=PureSourceDill())
ROLES = ("task link", "result link", "engine")

THREAD_POOL_CONFIG = """\
display_name: null
engine:
  type: ThreadPoolEngine
  max_workers: 4
"""


class Submitter:
    """An identity of the service sending functions to an endpoint: ``service``, ``headers``
    (its token) and ``endpoint_id`` are the subclass's."""

    service: RunningService
    headers: dict[str, str]
    endpoint_id: str
    _function_ids: dict

    def register_function(self, fn) -> str:
        if fn not in self._function_ids:
            code = SERIALIZER.pack_buffers([SERIALIZER.serialize(fn)])
            response = requests.post(f"{self.service.url}/v3/functions", headers=self.headers, timeout=30,
                                     json={"function_name": fn.__name__, "function_code": code})
            response.raise_for_status()
            self._function_ids[fn] = response.json()["function_uuid"]
        return self._function_ids[fn]

    def submit(self, fn, arg_lists: list[tuple]) -> list[str]:
        function_id = self.register_function(fn)
        payloads = [SERIALIZER.pack_buffers([SERIALIZER.serialize(tuple(a)), SERIALIZER.serialize({})])
                    for a in arg_lists]
        response = requests.post(f"{self.service.url}/v3/endpoints/{self.endpoint_id}/submit", headers=self.headers,
                                 json={"tasks": {function_id: payloads}}, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()["tasks"][function_id]


class EndpointHarness(Submitter):
    def __init__(self, service: RunningService, base_dir: Path, name: str = "ep",
                 config_text: str | None = THREAD_POOL_CONFIG, beside: EndpointHarness | None = None,
                 bin_dir: Path = BIN_DIR):
        """config_text None: the endpoint's directory is there already (made by another tool), as it is.
        beside: another harness of the same base_dir, whose login this one shares. bin_dir: where
        the globus-compute-endpoint it runs is (another installation of this checkout)."""
        self.service, self.base_dir, self.name, self.bin_dir = service, base_dir, name, bin_dir
        self.env = dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(base_dir),
                        GLOBUS_SDK_SERVICE_URL_COMPUTE=service.url)
        self.token = beside.token if beside else service.token("researcher")
        self.headers = {"Authorization": f"Bearer {self.token}"}
        if beside is None:
            assert self.cli("login", "--token", self.token).returncode == 0
        self.directory = base_dir / name
        if config_text is not None:
            assert self.cli("configure", name).returncode == 0
            (self.directory / "config.yaml").write_text(config_text)
        self._function_ids: dict = {}

    # ------------------------------------------------------------------ CLI

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin_dir / "globus-compute-endpoint"), *args], env=self.env, text=True,
                              capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self) -> subprocess.CompletedProcess:
        result = self.cli("start", self.name)
        assert result.returncode == 0, result.stdout + result.stderr + self.log()
        return result

    def stop(self) -> subprocess.CompletedProcess:
        return self.cli("stop", self.name)

    def status(self) -> str:
        for line in self.cli("list").stdout.splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) == 3 and cells[2] == self.name:
                return cells[1]
        raise AssertionError(f"{self.name} not listed")

    def log(self) -> str:
        path = self.directory / "endpoint.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def endpoint_id(self) -> str:
        return json.loads((self.directory / "endpoint.json").read_text())["endpoint_id"]

    # ------------------------------------------------------------------ processes

    def supervisor(self) -> psutil.Process:
        return psutil.Process(json.loads((self.directory / "daemon.pid").read_text())["pid"])

    def title(self) -> str:
        return f"Globus Compute Endpoint ({self.endpoint_id}, {self.name})"

    def wait_until_running(self, count: int, timeout: float = 60, excluding: frozenset[str] = frozenset()
                           ) -> list[str]:
        """The ids of the tasks a worker has taken, once there are ``count`` of them, as the
        status file (rewritten each second) lists them: the event a test kills things after.
        ``excluding``: tasks known to have ended, which a status a second old may still list."""
        deadline = time.monotonic() + timeout
        running: list[str] = []
        while time.monotonic() < deadline:
            try:
                listed = json.loads((self.directory / "status.json").read_text()).get("tasks_in_flight") or []
            except (OSError, ValueError):
                listed = []
            running = [t["task_id"] for t in listed if t["state"] == "running" and t["task_id"] not in excluding]
            if len(running) >= count:
                return running
            time.sleep(0.1)
        raise AssertionError(f"{len(running)} tasks running after {timeout} s, not {count}; log:\n{self.log()[-3000:]}")

    def children(self) -> dict[str, int]:
        """{role: pid} of the supervisor's live, titled children."""
        found = {}
        try:
            processes = self.supervisor().children()
        except (psutil.NoSuchProcess, FileNotFoundError):
            return found
        for process in processes:
            try:
                title = process.cmdline()[0]
                if process.status() != psutil.STATUS_ZOMBIE and title.startswith(self.title() + " "):
                    found[title[len(self.title()) + 1:]] = process.pid
            except (psutil.NoSuchProcess, IndexError):
                continue
        return found

    def tree_processes(self) -> list[psutil.Process]:
        """Every live process titled as this endpoint's, wherever it is in the process table."""
        out = []
        for process in psutil.process_iter(["cmdline"]):
            cmdline = process.info.get("cmdline") or []
            if cmdline and cmdline[0].startswith(self.title()):
                try:
                    if process.status() != psutil.STATUS_ZOMBIE:
                        out.append(process)
                except psutil.NoSuchProcess:
                    pass
        return out

    def wait_for_child(self, role: str, other_than: int | None = None, timeout: float = 10) -> tuple[int, float]:
        """The pid of the role's child (not other_than) and how long it took to appear."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            pid = self.children().get(role)
            if pid and pid != other_than and _ready_in_log(self, role, pid):
                return pid, time.monotonic() - started
            time.sleep(0.005)
        raise AssertionError(f"no new {role} within {timeout} s; log:\n{self.log()[-3000:]}")

    def kill_everything(self) -> None:
        if not (self.directory / "endpoint.json").exists():
            return  # never registered: nothing can carry its title
        for process in self.tree_processes():
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass

    # ------------------------------------------------------------------ tasks

    def executor(self, through: RunningService | None = None):
        """An official SDK Executor for this endpoint, through its service (or another replica),
        with a task group of its own (the SDK keeps one per process otherwise), sending function
        source as a notebook would."""
        import uuid

        from globus_compute_sdk import Executor

        from tests.sdk import sdk_client

        client = sdk_client((through or self.service).url, self.token, code_serialization_strategy=PureSourceDill())
        executor = Executor(endpoint_id=self.endpoint_id, client=client, task_group_id=uuid.uuid4())
        executor.serializer = SERIALIZER
        return executor

    def results(self, task_ids: list[str], timeout: float = 60) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        while True:
            response = requests.post(f"{self.service.url}/v2/batch_status", headers=self.headers,
                                     json={"task_ids": task_ids}, timeout=60)
            results = response.json()["results"]
            if all(results.get(t, {}).get("status") in ("success", "failed") for t in task_ids):
                return results
            assert time.monotonic() < deadline, f"results missing after {timeout} s; log:\n{self.log()[-3000:]}"
            time.sleep(0.1)

    def run(self, fn, arg_lists: list[tuple], timeout: float = 60) -> list:
        task_ids = self.submit(fn, arg_lists)
        results = self.results(task_ids, timeout)
        out = []
        for task_id in task_ids:
            result = results[task_id]
            assert result["status"] == "success", result.get("exception")
            out.append(SERIALIZER.deserialize(result["result"]))
        return out


def _ready_in_log(harness: EndpointHarness, role: str, pid: int) -> bool:
    return f"{role} (pid {pid}): starting -> running" in harness.log()
