"""Memory under a burst of large tasks: ours against the official endpoint 4.19, in one run.

Each endpoint in turn (ThreadPoolEngine, 1 worker) gets a burst of LARGE_TASKS tasks,
each carrying a 1 MiB argument, published straight to its task queue as fast as the
broker takes them (about ten times faster than one worker runs them). Each task waits
10 ms, as one that waits on I/O or in a library call: the interpreter is free meanwhile,
so nothing but the endpoint's own bounds stops it from taking the whole burst at once.
The resident memory of its whole process tree is sampled: idle before the burst, the
peak while it works through it, and AFTER_S seconds after the last result came back.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import amqp

from compute_endpoint.protocol import messages
from compute_endpoint.protocol.serialize import STRATEGIES_BY_NAME, pack_buffers, serialize

from .side_by_side import (
    OFFICIAL_VERSION,
    Endpoint,
    OfficialEndpoint,
    OurEndpoint,
    Stack,
    Wire,
    say,
    wait_until_consuming,
)

LARGE_TASKS = int(os.environ.get("BENCH_LARGE_TASKS", "3000"))
ARGUMENT_BYTES = 2**20
AFTER_S = float(os.environ.get("BENCH_AFTER_S", "10"))
ENGINE = "engine:\n  type: ThreadPoolEngine\n  max_workers: 1\n"
PORT = 5001


def length_of(data):
    import time

    time.sleep(0.01)
    return len(data)


def publish_large(wire: Wire, endpoint_id: str, count: int) -> list[str]:
    """count tasks of length_of(1 MiB of random bytes), made one at a time as they go."""
    code = pack_buffers([STRATEGIES_BY_NAME["PureSourceDill"].serialize(length_of)])
    buffer = code + pack_buffers([serialize((os.urandom(ARGUMENT_BYTES),)), serialize({})])
    placeholder = uuid.uuid4()
    template = messages.pack(messages.Task(task_id=placeholder, task_buffer=buffer))
    ids = []
    for _ in range(count):  # at the broker's pace: the body is the template with the task's id
        task_id = str(uuid.uuid4())
        body = template.replace(str(placeholder).encode(), task_id.encode(), 1)
        wire.channel.basic_publish(
            amqp.Message(body, delivery_mode=2, application_headers={
                "task_uuid": task_id, "function_uuid": wire.function_id, "resource_specification": "null"}),
            exchange="tasks", routing_key=f"{endpoint_id}.tasks")
        ids.append(task_id)
    return ids


class PeakSampler:
    """The tree's largest resident memory while it runs, sampled every 0.2 s."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        self.peak = 0.0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.wait(0.2):
            try:
                self.peak = max(self.peak, self.endpoint.tree_rss_mb())
            except Exception:  # a process of the tree came or went between two reads
                continue

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        return self.peak


def burst(wire: Wire, endpoint: Endpoint) -> dict[str, float]:
    wait_until_consuming(wire, endpoint)
    time.sleep(3)
    idle = endpoint.tree_rss_mb()
    sampler = PeakSampler(endpoint)
    started = time.perf_counter()
    ids = publish_large(wire, endpoint.endpoint_id, LARGE_TASKS)
    wire.wait_for(ids, timeout=max(600, LARGE_TASKS / 5))
    seconds = time.perf_counter() - started
    time.sleep(AFTER_S)
    after = endpoint.tree_rss_mb()
    peak = max(sampler.stop(), after)
    say(f"{endpoint.label}: {LARGE_TASKS} x 1 MiB in {seconds:.1f} s; idle {idle:.0f} MB, peak {peak:.0f} MB, "
        f"after {after:.0f} MB")
    return {"idle": idle, "peak": peak, "after": after, "tasks/s": LARGE_TASKS / seconds}


def measure() -> dict[str, dict[str, float]]:
    stack = Stack(PORT)
    figures = {}
    try:
        ours = OurEndpoint(stack, ENGINE, "ours-large")
        official = OfficialEndpoint(stack, ENGINE, "official-large")
        stack.start_service()
        ours.start()
        official.start()
        wire = Wire(stack.broker_url)
        try:
            for endpoint in (ours, official):
                wire.count_results_of(endpoint.endpoint_id)
                figures[endpoint.label] = burst(wire, endpoint)
        finally:
            wire.close()
            ours.stop()
            official.stop()
    finally:
        stack.close()
    return figures


def main() -> None:
    figures = measure()
    ours, official = figures["ours"], figures["official"]
    print(f"\nMemory of the process tree, {LARGE_TASKS:,} tasks x 1 MiB argument, ThreadPoolEngine with 1 worker "
          f"(ours against the official {OFFICIAL_VERSION})")
    print(f"{'measurement':<44}{'ours':>10}{'official':>10}{'ours/official':>15}")
    for key, name in (("idle", "idle RSS before the burst, MB"), ("peak", "peak RSS during the burst, MB"),
                      ("after", f"RSS {AFTER_S:.0f} s after the last result, MB"),
                      ("tasks/s", "large tasks/s (higher is better)")):
        print(f"{name:<44}{ours[key]:>10,.0f}{official[key]:>10,.0f}{ours[key] / official[key]:>15.2f}")
    limit = 1.2 * ours["idle"] + 100
    print(f"ours: peak is {ours['peak'] / official['peak']:.2f} of the official's (target <= 0.5); after the burst "
          f"{ours['after']:.0f} MB against 1.2 x idle + 100 = {limit:.0f} MB (target: at most that)")


if __name__ == "__main__":
    main()
