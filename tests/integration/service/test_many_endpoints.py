"""Many endpoints on one service: 100 registered, 20 of them running on this machine
(ThreadPoolEngine, one worker each). Registration, status reports and a 2,000-task spread
across the running ones work; the service's CPU and memory at idle and under that load are
printed (the closing note and the README quote them)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

from tests.endpoint_harness import SERIALIZER, EndpointHarness

# Twenty endpoint trees (80 processes) starting at once take both cores for most of a minute:
# alone, after the parallel suite, so they disturb no other test's timing.
pytestmark = [pytest.mark.slow, pytest.mark.exclusive]

REGISTERED, RUNNING, TASKS = 100, 20, 2000
ONE_WORKER = "engine:\n  type: ThreadPoolEngine\n  max_workers: 1\nheartbeat_period: 5\n"


def square(x):
    return x * x


class Usage:
    """The service process's CPU (percent of one core) and resident memory over a span."""

    def __init__(self, process: psutil.Process):
        self.process = process
        self.cpu_at, self.wall_at = self._cpu(), time.monotonic()
        self.peak_rss = process.memory_info().rss

    def _cpu(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)

    def report(self) -> tuple[float, float]:
        self.sample()
        return 100 * (self._cpu() - self.cpu_at) / (time.monotonic() - self.wall_at), self.peak_rss / 2**20


def test_a_hundred_endpoints_twenty_running_share_two_thousand_tasks(start_service, tmp_path):
    service = start_service()
    first = EndpointHarness(service, tmp_path / "gc", "ep00", ONE_WORKER)
    headers = first.headers
    for index in range(REGISTERED - RUNNING):  # registered, never started
        response = requests.post(f"{service.url}/v3/endpoints", headers=headers, timeout=30,
                                 json={"endpoint_name": f"idle{index:02d}"})
        assert response.status_code == 200, response.text
    def started(index: int) -> EndpointHarness:
        endpoint = first if index == 0 else EndpointHarness(service, tmp_path / "gc", f"ep{index:02d}", ONE_WORKER,
                                                            beside=first)
        running.append(endpoint)
        endpoint.start()
        return endpoint

    running: list[EndpointHarness] = []
    try:
        with ThreadPoolExecutor(4) as pool:
            running = list(pool.map(started, range(RUNNING)))
        listed = requests.get(f"{service.url}/v2/endpoints", headers=headers, timeout=30).json()
        assert len(listed) == REGISTERED

        def online() -> int:
            return sum(requests.get(f"{service.url}/v2/endpoints/{e.endpoint_id}/status", headers=headers,
                                    timeout=30).json()["status"] == "online" for e in running)
        deadline = time.monotonic() + 30
        while online() < RUNNING:
            assert time.monotonic() < deadline, f"only {online()} of {RUNNING} endpoints report online"
            time.sleep(0.5)

        process = psutil.Process(service.process.pid)
        idle = Usage(process)
        time.sleep(10)  # two status reports from each running endpoint
        idle_cpu, idle_rss = idle.report()

        busy = Usage(process)
        started = time.monotonic()
        function_id = first.register_function(square)
        per_endpoint = TASKS // RUNNING
        submitted: dict[str, list[str]] = {}
        for offset, endpoint in enumerate(running):
            endpoint._function_ids[square] = function_id
            submitted[endpoint.endpoint_id] = endpoint.submit(
                square, [(offset * per_endpoint + i,) for i in range(per_endpoint)])
        results = {}
        for endpoint in running:
            busy.sample()
            results.update(endpoint.results(submitted[endpoint.endpoint_id], timeout=180))
        elapsed = time.monotonic() - started
        busy_cpu, busy_rss = busy.report()
    finally:
        def stopped(endpoint: EndpointHarness) -> None:
            endpoint.cli("stop", endpoint.name, "--timeout", "20")
            endpoint.kill_everything()

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(stopped, running))
    assert sorted(SERIALIZER.deserialize(r["result"]) for r in results.values()) == [i * i for i in range(TASKS)]
    # Every running endpoint did its share (the service takes a result only from the task's own endpoint).
    assert all(all(results[t]["status"] == "success" for t in ids) for ids in submitted.values())
    print(f"\n{REGISTERED} endpoints registered, {RUNNING} running: {TASKS} tasks in {elapsed:.1f} s; service "
          f"CPU {idle_cpu:.1f}% of a core and {idle_rss:.0f} MB RSS at idle, {busy_cpu:.1f}% and "
          f"{busy_rss:.0f} MB (peak) under the load")
