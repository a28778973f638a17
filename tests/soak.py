"""`make soak`: an endpoint under a steady stream of tasks while its parts fail.

    python -m tests.soak [--minutes 5] [--rate 20]

A real compute-service and a real endpoint (ProcessPoolEngine, 4 workers) on the local
RabbitMQ. Tasks are submitted through the service's HTTP API at a fixed rate; every 20 s
one child of the tree (task link, result link or engine) gets a `kill -9`; once, RabbitMQ
is stopped for 5 s; 1% of the tasks crash their worker (`os._exit(3)`) and 5% carry
200 KB. Results are counted twice: on a tap queue of our own bound to the results exchange
(every result the endpoint publishes, duplicates included) and at the service, which keeps
one result per task and is what the user's SDK reads. It prints the figures and exits 1
when any promise failed: a task unanswered, a wrong value, an error other than the
crashers', the tree not Running, its memory at the end over 1.3x its memory after warm-up.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import kombu
import requests

CONFIG = """\
engine:
  type: ProcessPoolEngine
  max_workers: 4
  max_retries_on_system_failure: 2
"""
KILL_EVERY_S = 20.0
BROKER_DOWN_S = 5.0
WARM_UP_S = 30.0
MEMORY_GROWTH_MAX = 1.3
CRASH_SHARE, BIG_SHARE = 0.01, 0.05
BIG_BYTES = 200 * 1024


def work(kind, payload):
    """The soak's one function: kind "nap" sleeps a little, "big" answers its payload's size,
    "crash" kills its worker."""
    import os
    import time

    if kind == "crash":
        os._exit(3)
    if kind == "big":
        return len(payload)
    time.sleep(payload)
    return payload


def expected_value(kind: str, payload):
    return len(payload) if kind == "big" else payload


class ResultTap:
    """A queue of our own bound to the results exchange beside the service's: every result
    the endpoint publishes, duplicates included. It reconnects when the broker goes away."""

    def __init__(self, broker_url: str, endpoint_id: str):
        self.broker_url = broker_url
        self.queue = kombu.Queue(f"soak-tap-{uuid.uuid4().hex[:8]}",
                                 kombu.Exchange("results", type="topic", passive=True),
                                 routing_key=f"{endpoint_id}.results", durable=True, auto_delete=False)
        self.seen: Counter[str] = Counter()
        self.running = True
        with kombu.Connection(broker_url) as connection:
            self.queue.bind(connection.default_channel).declare()
        self.thread = threading.Thread(target=self._consume, name="result-tap", daemon=True)
        self.thread.start()

    def _consume(self) -> None:
        from compute_endpoint.protocol import messages

        def on_message(body, message):
            self.seen[str(messages.unpack(message.body).task_id)] += 1
            message.ack()

        while self.running:
            try:
                with kombu.Connection(self.broker_url) as connection:
                    with kombu.Consumer(connection.channel(), [self.queue], callbacks=[on_message], accept=None):
                        while self.running:
                            with contextlib.suppress(TimeoutError):
                                connection.drain_events(timeout=0.5)
            except Exception:  # the broker went away (a fault of the soak's own): read on when it is back
                time.sleep(0.5)

    def stop(self) -> None:
        self.running = False
        self.thread.join(5)
        with contextlib.suppress(Exception), kombu.Connection(self.broker_url) as connection:
            self.queue.bind(connection.default_channel).delete()


def tree_rss(endpoint) -> int:
    total = 0
    for process in endpoint.tree_processes():
        with contextlib.suppress(Exception):
            total += process.memory_info().rss
    return total


def broker_outage() -> None:
    subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, capture_output=True)
    time.sleep(BROKER_DOWN_S)
    subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "await_startup"], capture_output=True)


class Soak:
    def __init__(self, endpoint, minutes: float, rate: float, seed: int):
        self.endpoint, self.duration_s, self.rate = endpoint, minutes * 60, rate
        self.random = random.Random(seed)
        self.tasks: dict[str, tuple[str, object]] = {}  # task id: (kind, payload)
        self.kills: list[str] = []
        self.submit_retries = 0
        self.memory_after_warm_up = 0

    def _next_call(self) -> tuple[str, object]:
        roll = self.random.random()
        if roll < CRASH_SHARE:
            return "crash", 0
        if roll < CRASH_SHARE + BIG_SHARE:
            return "big", os.urandom(BIG_BYTES // 2).hex()[:BIG_BYTES]
        return "nap", round(self.random.uniform(0.01, 0.2), 3)

    def _submit(self, calls: list[tuple[str, object]]) -> None:
        """One batch; while the broker is down the service refuses it, and it is sent again."""
        while True:
            try:
                task_ids = self.endpoint.submit(work, calls)
                self.tasks.update(zip(task_ids, calls, strict=True))
                return
            except (requests.RequestException, AssertionError):
                self.submit_retries += 1
                time.sleep(0.5)

    def run(self) -> None:
        started = time.monotonic()
        next_kill, outage_at = started + KILL_EVERY_S, started + self.duration_s / 2
        outage: threading.Thread | None = None
        tick = 0.25
        while (now := time.monotonic()) - started < self.duration_s:
            self._submit([self._next_call() for _ in range(max(1, round(self.rate * tick)))])
            if not self.memory_after_warm_up and now - started >= WARM_UP_S:
                self.memory_after_warm_up = tree_rss(self.endpoint)
            if now >= next_kill:
                self._kill_a_child()
                next_kill += KILL_EVERY_S
            if outage is None and now >= outage_at:
                print(f"  {now - started:5.0f} s  RabbitMQ stopped for {BROKER_DOWN_S:g} s", flush=True)
                outage = threading.Thread(target=broker_outage, daemon=True)
                outage.start()
            time.sleep(max(0.0, tick - (time.monotonic() - now)))
        if outage is not None:
            outage.join()

    def _kill_a_child(self) -> None:
        children = self.endpoint.children()
        if not children:
            return
        role = self.random.choice(sorted(children))
        with contextlib.suppress(ProcessLookupError):
            os.kill(children[role], signal.SIGKILL)
        self.kills.append(role)
        print(f"  kill -9 {role} (pid {children[role]}); {len(self.tasks)} tasks so far", flush=True)


def judge(soak: Soak, tap: ResultTap, results: dict[str, dict], status: str, memory_end: int) -> dict:
    from tests.endpoint_harness import SERIALIZER

    wrong, unexpected_errors, crash_errors = [], [], 0
    for task_id, (kind, payload) in soak.tasks.items():
        result = results.get(task_id, {})
        if kind == "crash":
            if result.get("status") == "failed" and "exited with status 3" in result.get("exception", ""):
                crash_errors += 1
            else:
                unexpected_errors.append((task_id, result.get("status"), str(result.get("exception"))[-200:]))
        elif result.get("status") == "failed":
            unexpected_errors.append((task_id, "failed", str(result.get("exception"))[-300:]))
        elif (result.get("status") != "success"
              or SERIALIZER.deserialize(result["result"]) != expected_value(kind, payload)):
            wrong.append(task_id)
    tapped = soak.tasks.keys() & tap.seen.keys()
    growth = memory_end / soak.memory_after_warm_up if soak.memory_after_warm_up else float("inf")
    return {
        "tasks": len(soak.tasks), "crashing": sum(1 for k, _ in soak.tasks.values() if k == "crash"),
        "200 KB": sum(1 for k, _ in soak.tasks.values() if k == "big"),
        "kills": dict(Counter(soak.kills)), "submits refused while the broker was down": soak.submit_retries,
        "answered at the service": sum(1 for t in soak.tasks
                                       if results.get(t, {}).get("status") in ("success", "failed")),
        "answered on the tap": len(tapped), "unanswered on the tap": len(soak.tasks) - len(tapped),
        "duplicates on the tap": sum(tap.seen[t] - 1 for t in tapped),
        "wrong values": len(wrong), "crash errors naming the worker's death": crash_errors,
        "unexpected errors": len(unexpected_errors), "status": status,
        "memory after warm-up MiB": round(soak.memory_after_warm_up / 2**20, 1),
        "memory at the end MiB": round(memory_end / 2**20, 1), "memory growth": round(growth, 2),
        "examples of unexpected errors": unexpected_errors[:3],
    }


def failures(figures: dict) -> list[str]:
    from compute_endpoint.workers.result_link import MAX_UNCONFIRMED

    checks = [
        (figures["answered at the service"] == figures["tasks"], "a task went unanswered at the service"),
        (figures["unanswered on the tap"] == 0, "a task's result never crossed the results exchange"),
        (figures["wrong values"] == 0, "a task got a wrong value"),
        (figures["unexpected errors"] == 0, "a task that should have succeeded failed"),
        (figures["crash errors naming the worker's death"] == figures["crashing"],
         "a crashing task's error did not name its worker's death"),
        (figures["status"] == "Running", "the endpoint is not Running"),
        (figures["memory growth"] <= MEMORY_GROWTH_MAX, f"the tree's memory grew over {MEMORY_GROWTH_MAX}x"),
        # Republished unconfirmed results are the only duplicates the endpoint may send (the
        # service keeps the first); each dead result link can resend at most its bound.
        (figures["duplicates on the tap"] <= MAX_UNCONFIRMED * (figures["kills"].get("result link", 0) + 1),
         "more duplicates than dead result links can explain"),
    ]
    return [what for ok, what in checks if not ok]


def final_results(endpoint, task_ids: list[str], timeout: float) -> dict[str, dict]:
    """What the service holds for each task (what the SDK reads), asked in batches, until all
    are final or the timeout passes (then the unanswered ones are missing)."""
    results: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = [t for t in task_ids if results.get(t, {}).get("status") not in ("success", "failed")]
        if not pending:
            break
        for start in range(0, len(pending), 500):
            response = requests.post(f"{endpoint.service.url}/v2/batch_status", headers=endpoint.headers,
                                     json={"task_ids": pending[start:start + 500]}, timeout=60)
            response.raise_for_status()
            results.update(response.json()["results"])
        time.sleep(1)
    return results


def soak(minutes: float, rate: float, seed: int, base_dir: Path) -> dict:
    from tests.conftest import RunningService
    from tests.endpoint_harness import EndpointHarness

    vhost = f"soak-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                   check=True, capture_output=True)
    broker_url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    (base_dir / "service").mkdir()
    service = RunningService(base_dir / "service", None, broker_url)
    endpoint = EndpointHarness(service, base_dir / "gc", "soak", CONFIG)
    tap = None
    try:
        endpoint.start()
        tap = ResultTap(broker_url, endpoint.endpoint_id)
        print(f"soak: {minutes:g} min at {rate:g} tasks/s; kill -9 of a child every {KILL_EVERY_S:g} s; "
              f"RabbitMQ down {BROKER_DOWN_S:g} s at half time", flush=True)
        run = Soak(endpoint, minutes, rate, seed)
        run.run()
        print(f"  submitted {len(run.tasks)} tasks; waiting for the last results", flush=True)
        results = final_results(endpoint, list(run.tasks), timeout=300)
        time.sleep(2)  # late duplicates, if any, reach the tap
        figures = judge(run, tap, results, endpoint.status(), tree_rss(endpoint))
    finally:
        if tap is not None:
            tap.stop()
        endpoint.cli("stop", endpoint.name, "--timeout", "10")
        endpoint.kill_everything()
        service.stop()
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", 5)))
    parser.add_argument("--rate", type=float, default=20.0, help="tasks submitted per second")
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args(argv)
    if options.minutes <= 0 or options.rate <= 0:
        parser.error("--minutes and --rate must be positive numbers")
    with tempfile.TemporaryDirectory(prefix="soak-") as directory:
        figures = soak(options.minutes, options.rate, options.seed, Path(directory))
    print("\nsoak figures")
    for name, value in figures.items():
        print(f"  {name:45} {value}")
    problems = failures(figures)
    print("\nsoak: " + ("PASSED" if not problems else "FAILED: " + "; ".join(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
