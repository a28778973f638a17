"""Memory bounded by bytes: a backlog of large tasks waiting for an endpoint whose whole tree
runs under a real memory limit (a cgroup, as a login node's per-user limit), with the
default configuration. Every task gets its own result, no process is killed or
restarted, and the task bodies held at once stay within the budget."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from pathlib import Path

import pytest

from compute_endpoint.endpoint.config import EndpointConfig
from compute_endpoint.workers.payloads import TASK_BODIES
from tests.cgroups import make_memory_cgroup
from tests.conftest import BIN_DIR
from tests.direct_tasks import DirectTasks
from tests.endpoint_harness import EndpointHarness

pytestmark = pytest.mark.slow

LIMIT = 400 * 2**20  # the tree idles at about 130 MB; the burst is three times the limit
TASKS = 800
ARGUMENT_BYTES = 2**20
CONFIG = """\
engine:
  type: ThreadPoolEngine
  max_workers: 2
"""


def digest_of(data):
    import hashlib
    import time

    time.sleep(0.01)
    return hashlib.sha256(data).hexdigest()


def calls():
    for i in range(TASKS):
        data = i.to_bytes(4, "big") + os.urandom(ARGUMENT_BYTES - 4)
        yield (data,), hashlib.sha256(data).hexdigest()


class FolderPeak:
    """The largest total size of a folder's files, sampled every 0.1 s."""

    def __init__(self, folder: Path):
        self.folder, self.peak, self.stopped = folder, 0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stopped.wait(0.1):
            total = 0
            for entry in os.scandir(self.folder) if self.folder.is_dir() else ():
                try:
                    total += entry.stat().st_size
                except FileNotFoundError:
                    continue  # acknowledged meanwhile
            self.peak = max(self.peak, total)

    def stop(self) -> int:
        self.stopped.set()
        self.thread.join()
        return self.peak


@pytest.fixture
def cgroup():
    made = make_memory_cgroup()
    if isinstance(made, str):
        pytest.skip(f"needs a memory cgroup of its own: {made}")
    made.limit(LIMIT)
    yield made
    made.remove()


def start_in(cgroup, endpoint: EndpointHarness) -> None:
    started = subprocess.run([str(BIN_DIR / "globus-compute-endpoint"), "start", endpoint.name], env=endpoint.env,
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                             preexec_fn=cgroup.join)
    assert started.returncode == 0, started.stdout + started.stderr + endpoint.log()


def test_a_backlog_three_times_the_memory_limit_runs_to_the_end(start_service, broker_url, tmp_path, cgroup):
    endpoint = EndpointHarness(start_service(), tmp_path / "gc", "ep", CONFIG)
    start_in(cgroup, endpoint)  # registers it: its task queue exists from now on
    assert endpoint.stop().returncode == 0
    run = DirectTasks(endpoint, broker_url)
    try:
        run.publish_calls(digest_of, calls())
        bodies = FolderPeak(endpoint.directory / TASK_BODIES)
        start_in(cgroup, endpoint)
        assert endpoint.supervisor().pid in cgroup.pids()
        children = endpoint.children()
        run.collect(until=TASKS, timeout=400)
        peak_bodies = bodies.stop()
        wrong = [t for t, v in run.expected.items() if run.value(t) != v]
        print(f"\nMEMORY-LIMIT tasks={TASKS} limit={LIMIT >> 20} MiB cgroup peak={cgroup.peak() >> 20} MiB "
              f"task bodies held at most={peak_bodies >> 20} MiB oom kills={cgroup.oom_kills()}")
        assert wrong == [], [run.value(t) for t in wrong[:3]]
        assert cgroup.oom_kills() == 0
        assert endpoint.children() == children, endpoint.log()[-3000:]  # nothing died and came back
        budget = EndpointConfig.__attrs_attrs__.max_task_bytes_in_flight.default
        assert 0 < peak_bodies <= budget + 2 * ARGUMENT_BYTES
    finally:
        run.close()
        endpoint.cli("stop", endpoint.name, "--timeout", "10")
        endpoint.kill_everything()
