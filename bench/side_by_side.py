"""Ours against the official globus-compute-endpoint 4.19, on the same RabbitMQ and work.

Both endpoints are registered with our compute-service; ours runs as users run it
(`globus-compute-endpoint start`), the official one as its user endpoint
(`_start-user-endpoint NAME`, registration JSON on stdin), from a venv of its own that
this module creates (never ours). Each measurement runs for both in alternating rounds
in one run; the table gives medians and the ratio ours/official.

No-op tasks are published straight to each endpoint's task queue and results counted on
a queue of the bench's own bound to the results exchange, so the service is out of the
way; the end-to-end row goes through the SDK Executor and the service.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import amqp
import psutil
import requests

from compute_endpoint.protocol import messages
from compute_endpoint.protocol.serialize import STRATEGIES_BY_NAME, pack_buffers, serialize

OFFICIAL_VERSION = "4.19.0"
OFFICIAL_VENV = Path(os.environ.get("BENCH_OFFICIAL_VENV", Path(__file__).parent / ".official-venv"))
BIN = Path(sys.executable).parent
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SIZES = tuple(int(n) for n in os.environ.get("BENCH_SIZES", "2000,20000").split(","))
LATENCY_SAMPLES = int(os.environ.get("BENCH_LATENCY_SAMPLES", "60"))
E2E_TASKS = int(os.environ.get("BENCH_E2E_TASKS", "2000"))
RABBITMQ = os.environ.get("BENCH_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672")
WORKERS = 4

ENGINES = {  # noqa
    "ThreadPoolEngine": f"engine:\n  type: ThreadPoolEngine\n  max_workers: {WORKERS}\n",
    "ProcessPoolEngine": f"engine:\n  type: ProcessPoolEngine\n  max_workers: {WORKERS}\n",
    "GlobusComputeEngine": (f"engine:\n  type: GlobusComputeEngine\n  max_workers_per_node: {WORKERS}\n"
                            "  provider:\n    type: LocalProvider\n    init_blocks: 1\n    min_blocks: 1\n"
                            "    max_blocks: 1\n"),
}


def noop():
    return None


def say(text: str) -> None:
    print(f"  [bench] {text}", file=sys.stderr, flush=True)


def add_row(rows: list, row: tuple[str, float, float, str]) -> None:
    """A finished row goes into the table, and on the screen at once: a full run takes minutes."""
    rows.append(row)
    name, ours, official, better = row
    ratio = ours / official if official else float("nan")
    say(f"row done: {name}: ours {ours:,.2f}, official {official:,.2f} (ours/official {ratio:.2f}, "
        f"{better} is better)")


# ---------------------------------------------------------------- the official endpoint's venv


def official_venv() -> Path:
    """The official endpoint in a venv of its own; installed on first use."""
    script = OFFICIAL_VENV / "bin" / "globus-compute-endpoint"
    if script.exists():
        return OFFICIAL_VENV
    say(f"installing globus-compute-endpoint=={OFFICIAL_VERSION} into {OFFICIAL_VENV} (once) ...")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(OFFICIAL_VENV)], check=True)
    subprocess.run([str(OFFICIAL_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    f"globus-compute-endpoint=={OFFICIAL_VERSION}"], check=True)
    return OFFICIAL_VENV


# ---------------------------------------------------------------- the stack: RabbitMQ vhost, service


def answers(url: str, timeout_s: float = 30) -> bool:
    """Whether a Compute service (ours, or the null one) answers at url within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/v2/version", timeout=2).ok:
                return True
        time.sleep(0.1)
    return False


class Stack:
    """A RabbitMQ vhost and a compute-service of the bench's own, in a scratch folder (SQLite
    there, or the PostgreSQL database at db_url, which replicas of the service share)."""

    def __init__(self, port: int, db_url: str | None = None):
        self.scratch = Path(tempfile.mkdtemp(prefix="compute-endpoint-bench-"))
        self.vhost = f"bench-{uuid.uuid4().hex[:8]}"
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", self.vhost], check=True, capture_output=True)
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*"],
                       check=True, capture_output=True)
        self.broker_url = f"{RABBITMQ}/{self.vhost}"
        self.port = port
        self.url = f"http://localhost:{port}"
        self.data_dir = self.scratch / "service"
        self.db_args = ["--db", db_url] if db_url else []
        self.services: list[subprocess.Popen] = []
        self.token = subprocess.run([str(BIN / "compute-service"), "token", "create", "--identity", "bench",
                                     "--data-dir", str(self.data_dir), *self.db_args], check=True,
                                    capture_output=True, text=True).stdout.strip()
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def start_service(self, port: int | None = None) -> str:
        """The service on the stack's port, or a replica of it on another; its URL."""
        port = port or self.port
        log = (self.scratch / f"service-{port}.log").open("a")
        self.services.append(subprocess.Popen(
            [str(BIN / "compute-service"), "serve", "--port", str(port), "--data-dir", str(self.data_dir),
             "--log-level", os.environ.get("BENCH_SERVICE_LOG_LEVEL", "warning"), "--shared-broker-credentials",
             *self.db_args],
            env=dict(os.environ, COMPUTE_SERVICE_BROKER_URL=self.broker_url), stdout=log, stderr=log))
        url = f"http://localhost:{port}"
        if not answers(url):
            raise RuntimeError(f"compute-service did not start: {(self.scratch / f'service-{port}.log').read_text()}")
        return url

    def stop_service(self) -> None:
        """Every replica."""
        for service in self.services:
            service.terminate()
            service.wait(timeout=20)
        self.services = []

    def register(self, name: str) -> dict:
        response = requests.post(f"{self.url}/v3/endpoints", headers=self.headers, timeout=30,
                                 json={"endpoint_name": name})
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        self.stop_service()
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.vhost], capture_output=True)
        shutil.rmtree(self.scratch, ignore_errors=True)


# ---------------------------------------------------------------- the two endpoints


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def kill_leftovers(directory: Path) -> None:
    """Worker pools that outlive their endpoint (the official one leaves its HTEX workers,
    started in a session of their own) would take CPU from every later measurement."""
    for process in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(str(directory) in part for part in process.info["cmdline"] or ()):
                process.kill()


class Endpoint:
    label: str
    endpoint_id: str

    def root_pid(self) -> int:
        raise NotImplementedError

    def tree_rss_mb(self) -> float:
        return self._tree_memory_mb(lambda process: process.memory_info().rss)

    def tree_pss_mb(self) -> float:
        """Proportional set size: a page shared by n processes counts 1/n in each, so the sum
        is what the tree takes (RSS counts shared libraries and copy-on-write pages again in
        every process)."""
        return self._tree_memory_mb(lambda process: process.memory_full_info().pss)

    def _tree_memory_mb(self, measure) -> float:
        root = psutil.Process(self.root_pid())
        processes = [root, *root.children(recursive=True)]
        total = 0
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += measure(process)
        return total / 2**20


class OurEndpoint(Endpoint):
    label = "ours"

    def __init__(self, stack: Stack, engine_yaml: str, name: str):
        self.stack, self.name = stack, name
        self.user_dir = stack.scratch / "ours"
        self.env = dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(self.user_dir),
                        GLOBUS_SDK_SERVICE_URL_COMPUTE=stack.url)
        if not (self.user_dir / name).exists():
            self.cli("configure", name)
        # The kill measurements restart children more often than the default intensity allows.
        (self.user_dir / name / "config.yaml").write_text(engine_yaml + "max_restarts: 100\n")

    def cli(self, *args: str) -> str:
        result = subprocess.run([str(BIN / "globus-compute-endpoint"), *args], env=self.env, capture_output=True,
                                text=True, timeout=120)
        if result.returncode:
            raise RuntimeError(f"ours: {' '.join(args)} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def start(self) -> None:
        self.cli("login", "--token", self.stack.token)  # once; later it says "already logged in"
        self.cli("start", self.name)
        self.endpoint_id = json.loads((self.user_dir / self.name / "endpoint.json").read_text())["endpoint_id"]

    def stop(self) -> None:
        self.cli("stop", self.name)
        kill_leftovers(self.user_dir / self.name)

    def root_pid(self) -> int:
        return json.loads((self.user_dir / self.name / "daemon.pid").read_text())["pid"]

    def child(self, role: str) -> int:
        for process in psutil.Process(self.root_pid()).children():
            if process.cmdline() and process.cmdline()[0].endswith(f" {role}"):
                return process.pid
        raise RuntimeError(f"no {role} child")


class OfficialEndpoint(Endpoint):
    label = "official"

    def __init__(self, stack: Stack, engine_yaml: str, name: str):
        self.stack, self.engine_yaml, self.name = stack, engine_yaml, name
        self.venv = official_venv()
        self.user_dir = stack.scratch / "official"
        (self.user_dir / name).mkdir(parents=True, exist_ok=True, mode=0o700)
        self.registration: dict | None = None
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        if self.registration is None:
            self.registration = self.stack.register(self.name)
            self.endpoint_id = self.registration["endpoint_id"]
        env = dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(self.user_dir),
                   PATH=f"{self.venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
        env.pop("VIRTUAL_ENV", None)
        log = (self.stack.scratch / f"official-{self.name}.log").open("a")
        self.process = subprocess.Popen(
            [str(self.venv / "bin" / "globus-compute-endpoint"), "_start-user-endpoint", self.name],
            stdin=subprocess.PIPE, stdout=log, stderr=log, env=env, start_new_session=True)
        self.process.stdin.write(json.dumps({"amqp_creds": self.registration, "config": self.engine_yaml,
                                             "ep_info": {}}).encode())
        self.process.stdin.close()

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, 15)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()
        self.process = None
        kill_leftovers(self.user_dir / self.name)

    def root_pid(self) -> int:
        return self.process.pid


# ---------------------------------------------------------------- publishing tasks, counting results


class Wire:
    """One AMQP connection that publishes no-op tasks and counts results per endpoint."""

    def __init__(self, broker_url: str):
        parts = broker_url.split("/")
        self.connection = amqp.Connection(host=parts[2].rpartition("@")[2], userid="guest", password="guest",
                                          virtual_host=parts[3])
        self.connection.connect()
        self.channel = self.connection.channel()
        code = pack_buffers([STRATEGIES_BY_NAME["PureSourceDill"].serialize(noop)])
        self.task_buffer = code + pack_buffers([serialize(()), serialize({})])
        self.function_id = str(uuid.uuid4())
        self.arrived: dict[str, float] = {}
        self.waiting: set[str] = set()
        self.counters: dict[str, str] = {}

    def detach_service_queue(self) -> None:
        """While the service is stopped, its results queue would only pile up persistent
        messages on disk, costing the broker (for both endpoints alike) what no consumer
        reads; unbind it (the service binds it again when it starts) and empty it."""
        self.channel.queue_unbind("results", "results", routing_key="*.results")
        self.channel.queue_purge("results")

    def count_results_of(self, endpoint_id: str) -> None:
        queue = f"bench-results-{endpoint_id}"
        self.channel.queue_declare(queue, exclusive=True, auto_delete=True)
        self.channel.queue_bind(queue, "results", routing_key=f"{endpoint_id}.results")
        self.channel.basic_consume(queue, no_ack=True, callback=self._on_result)

    def _on_result(self, message) -> None:
        # Only the task id, and cheaply: the bench's own CPU is taken from both endpoints alike.
        body = message.body
        at = body.find(b'"task_id":"')
        if at >= 0:
            task_id = body[at + 11:at + 47].decode()
            self.arrived[task_id] = time.perf_counter()
            self.waiting.discard(task_id)

    def prepare(self, count: int, task_buffers: list[bytes] | None = None) -> list[tuple[str, amqp.Message]]:
        """Task messages made before the clock starts: count no-ops, or one per task buffer."""
        out = []
        for task_buffer in task_buffers or [self.task_buffer] * count:
            task_id = str(uuid.uuid4())
            body = messages.pack(messages.Task(task_id=uuid.UUID(task_id), task_buffer=task_buffer))
            out.append((task_id, amqp.Message(body, delivery_mode=2, application_headers={
                "task_uuid": task_id, "function_uuid": self.function_id, "resource_specification": "null"})))
        return out

    def publish(self, endpoint_id: str, count: int = 0, prepared: list | None = None) -> list[str]:
        prepared = prepared if prepared is not None else self.prepare(count)
        for _, message in prepared:
            self.channel.basic_publish(message, exchange="tasks", routing_key=f"{endpoint_id}.tasks")
        return [task_id for task_id, _ in prepared]

    def wait_for(self, ids: list[str], timeout: float) -> float:
        """Wait until every id has a result; the time the last one arrived."""
        deadline = time.monotonic() + timeout
        self.waiting = set(ids) - self.arrived.keys()
        while self.waiting:  # emptied by _on_result: no rescan of the ids per message
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.waiting)} of {len(ids)} results missing after {timeout} s")
            with contextlib.suppress(TimeoutError):
                self.connection.drain_events(timeout=0.2)
        return max(self.arrived[i] for i in ids)

    def throughput(self, endpoint_id: str, count: int) -> float:
        prepared = self.prepare(count)
        started = time.perf_counter()
        ids = self.publish(endpoint_id, prepared=prepared)
        last = self.wait_for(ids, timeout=max(120, count / 50))
        return count / (last - started)

    def latencies(self, endpoint_id: str, count: int) -> list[float]:
        out = []
        for _ in range(count):
            prepared = self.prepare(1)
            started = time.perf_counter()
            [task_id] = self.publish(endpoint_id, prepared=prepared)
            out.append(self.wait_for([task_id], timeout=60) - started)
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()


def echo_ceiling(broker_url: str, count: int) -> float:
    """The broker's ceiling for this traffic: a consumer in a second process that
    republishes each message to the results exchange, confirmed one by one."""
    wire = Wire(broker_url)
    echo_id = f"echo-{uuid.uuid4().hex[:8]}"
    wire.channel.exchange_declare("tasks", "direct", durable=True, auto_delete=False)  # as the service has them
    wire.channel.exchange_declare("results", "topic", durable=True, auto_delete=False)
    wire.channel.queue_declare(f"{echo_id}.tasks", auto_delete=False)
    wire.channel.queue_bind(f"{echo_id}.tasks", "tasks", routing_key=f"{echo_id}.tasks")
    wire.count_results_of(echo_id)
    echo = subprocess.Popen([sys.executable, "-m", "bench.echo", broker_url, f"{echo_id}.tasks", f"{echo_id}.results"])
    try:
        time.sleep(1.0)
        return wire.throughput(echo_id, count)
    finally:
        echo.terminate()
        echo.wait()
        wire.channel.queue_delete(f"{echo_id}.tasks")
        wire.close()


# ---------------------------------------------------------------- the run


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_until_consuming(wire: Wire, endpoint: Endpoint, timeout: float = 120) -> float:
    """Until a first task comes back: the endpoint is up and its workers too."""
    started = time.perf_counter()
    [task_id] = wire.publish(endpoint.endpoint_id, 1)
    return wire.wait_for([task_id], timeout) - started


def compare_engine(stack: Stack, engine: str, rows: list, extras: dict) -> None:
    ours = OurEndpoint(stack, ENGINES[engine], f"ours-{engine}")
    official = OfficialEndpoint(stack, ENGINES[engine], f"official-{engine}")
    stack.start_service()
    ours.start()
    official.start()
    stack.stop_service()  # out of the way: results go to the bench's own queues only
    wire = Wire(stack.broker_url)
    wire.detach_service_queue()
    try:
        for endpoint in (ours, official):
            wire.count_results_of(endpoint.endpoint_id)
            wait_until_consuming(wire, endpoint)
        both = (ours, official)
        for size in SIZES:
            figures = {e.label: [] for e in both}
            for round_ in range(ROUNDS if size <= 5000 else 1):  # the long runs: one each, within 10 minutes
                for endpoint in (both if round_ % 2 == 0 else both[::-1]):
                    figures[endpoint.label].append(wire.throughput(endpoint.endpoint_id, size))
                    say(f"{engine} {endpoint.label} {size} tasks: {figures[endpoint.label][-1]:,.0f}/s")
            add_row(rows, (f"{engine}: no-op tasks/s, N={size:,}", median(figures["ours"]),
                         median(figures["official"]), "higher"))
        compare_mixed_burst(wire, engine, both, rows)
        samples = {e.label: [] for e in both}
        for round_ in range(ROUNDS):
            for endpoint in (both if round_ % 2 == 0 else both[::-1]):
                samples[endpoint.label] += wire.latencies(endpoint.endpoint_id, LATENCY_SAMPLES // ROUNDS)
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            add_row(rows, (f"{engine}: round trip {name}, ms", 1000 * percentile(samples["ours"], q),
                         1000 * percentile(samples["official"], q), "lower"))
        time.sleep(3)  # idle
        add_row(rows, (f"{engine}: idle RSS of the process tree, MB", ours.tree_rss_mb(), official.tree_rss_mb(),
                       "lower"))
        add_row(rows, (f"{engine}: idle PSS of the process tree, MB", ours.tree_pss_mb(), official.tree_pss_mb(),
                       "lower"))
        if engine == "ThreadPoolEngine":
            extras["kill"] = kill_children(wire, ours)
            stack.start_service()  # ours registers as it starts
            for row in start_to_first_result(wire, ours, official):
                add_row(rows, row)
            stack.stop_service()
            wire.detach_service_queue()
    finally:
        wire.close()
        ours.stop()
        official.stop()


MIXED_BURST = ((0.005, 1800), (0.1, 180), (1.0, 20))  # (seconds, how many): 90%, 9%, 1% of 2,000


def nap(seconds):
    import time

    time.sleep(seconds)


def mixed_burst(wire: Wire, endpoint_id: str) -> tuple[float, float, float]:
    """2,000 tasks of mixed durations published at once, in a fixed shuffled order: the makespan
    over the ideal (the total work over the workers), and when the 5 ms tasks' results arrived
    after the burst began (p50, p90, s). Held results (a chunk waiting for its slowest task)
    or a worker left idle while others queue would show here."""
    code = pack_buffers([STRATEGIES_BY_NAME["PureSourceDill"].serialize(nap)])
    durations = [seconds for seconds, count in MIXED_BURST for _ in range(count)]
    random.Random(7).shuffle(durations)
    prepared = wire.prepare(0, [code + pack_buffers([serialize((d,)), serialize({})]) for d in durations])
    started = time.perf_counter()
    ids = wire.publish(endpoint_id, prepared=prepared)
    last = wire.wait_for(ids, timeout=300)
    short = [wire.arrived[task_id] - started for task_id, d in zip(ids, durations, strict=True) if d == 0.005]
    ideal = sum(durations) / WORKERS
    return (last - started) / ideal, percentile(short, 0.5), percentile(short, 0.9)


def compare_mixed_burst(wire: Wire, engine: str, both: tuple, rows: list) -> None:
    figures: dict[str, list] = {e.label: [] for e in both}
    for round_ in range(ROUNDS):
        for endpoint in (both if round_ % 2 == 0 else both[::-1]):
            figures[endpoint.label].append(mixed_burst(wire, endpoint.endpoint_id))
            say(f"{engine} {endpoint.label} mixed burst: makespan/ideal {figures[endpoint.label][-1][0]:.3f}")
    for index, name in enumerate(("makespan / ideal", "5 ms tasks' results p50, s", "5 ms tasks' results p90, s")):
        add_row(rows, (f"{engine}: mixed burst of 2,000, {name}", median([f[index] for f in figures["ours"]]),
                       median([f[index] for f in figures["official"]]), "lower"))


def start_to_first_result(wire: Wire, ours: OurEndpoint, official: OfficialEndpoint) -> list:
    figures = {"ours": [], "official": []}
    for round_ in range(ROUNDS):
        for endpoint in ((ours, official) if round_ % 2 == 0 else (official, ours)):
            endpoint.stop()
            [task_id] = wire.publish(endpoint.endpoint_id, 1)  # waiting in the queue
            started = time.perf_counter()
            endpoint.start()
            figures[endpoint.label].append(wire.wait_for([task_id], timeout=120) - started)
    return [("start until the first result, s", median(figures["ours"]), median(figures["official"]), "lower")]


def kill_children(wire: Wire, ours: OurEndpoint) -> dict[str, float]:
    """kill -9 of each child; the time until a task published right after it is answered."""
    out = {}
    for role in ("task link", "result link", "engine"):
        times = []
        for _ in range(ROUNDS):
            pid = ours.child(role)
            os.kill(pid, 9)
            started = time.perf_counter()
            [task_id] = wire.publish(ours.endpoint_id, 1)
            times.append(wire.wait_for([task_id], timeout=60) - started)
            time.sleep(1.5)  # within the restart intensity
        out[role] = median(times)
    return out


def list_wall_time(stack: Stack) -> tuple[float, float]:
    def timed(script: Path, user_dir: Path) -> float:
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            subprocess.run([str(script), "list"], env=dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(user_dir)),
                           capture_output=True, check=True)
            runs.append(time.perf_counter() - started)
        return median(runs)
    return (timed(BIN / "globus-compute-endpoint", stack.scratch / "ours"),
            timed(official_venv() / "bin" / "globus-compute-endpoint", stack.scratch / "official"))


def executor_throughput(client, endpoint_id: str, tasks: int) -> float:
    """The official SDK Executor: tasks/s from the first submit to the last result."""
    from globus_compute_sdk import Executor
    from globus_compute_sdk.serialize import ComputeSerializer, PureSourceDill

    with Executor(endpoint_id=endpoint_id, client=client, task_group_id=uuid.uuid4()) as ex:
        ex.serializer = ComputeSerializer(strategy_code=PureSourceDill())
        ex.submit(noop).result(timeout=120)  # registered, warmed up
        started = time.perf_counter()
        futures = [ex.submit(noop) for _ in range(tasks)]
        for future in futures:
            future.result(timeout=300)
        return tasks / (time.perf_counter() - started)


@contextlib.contextmanager
def null_system(stack: Stack):
    """The null service on port 5000 and its echo consumer, on the stack's vhost."""
    processes = [subprocess.Popen([sys.executable, "-m", "bench.null_system", "serve", stack.broker_url,
                                   str(stack.port)]),
                 subprocess.Popen([sys.executable, "-m", "bench.null_system", "echo", stack.broker_url])]
    try:
        if not answers(stack.url):
            raise RuntimeError("the null service did not start")
        yield
    finally:
        for process in processes:
            process.terminate()
            process.wait()


def end_to_end(stack: Stack) -> dict[str, float]:
    """Through the SDK Executor (port 5000: the SDK's local environment): our service with our
    endpoint, our service with the official endpoint, and the null system (the ceiling), in
    alternating rounds."""
    import globus_sdk
    from globus_compute_sdk import Client
    from globus_compute_sdk.serialize import PureSourceDill

    figures: dict[str, list[float]] = {"ours": [], "official": [], "ceiling": []}
    ours = OurEndpoint(stack, ENGINES["ThreadPoolEngine"], "ours-e2e")
    official = OfficialEndpoint(stack, ENGINES["ThreadPoolEngine"], "official-e2e")
    stack.start_service()
    ours.start()
    official.start()
    # The SDK's Client checks the service's version as it is made.
    client = Client(local_compute_services=True, authorizer=globus_sdk.AccessTokenAuthorizer(stack.token),
                    code_serialization_strategy=PureSourceDill())
    stack.stop_service()
    try:
        for round_ in range(max(1, ROUNDS - 1)):
            with null_system(stack):
                figures["ceiling"].append(executor_throughput(client, str(uuid.uuid4()), E2E_TASKS))
            say(f"end to end, null system (ceiling): {figures['ceiling'][-1]:,.0f}/s")
            stack.start_service()
            for endpoint in ((ours, official) if round_ % 2 == 0 else (official, ours)):
                figures[endpoint.label].append(executor_throughput(client, endpoint.endpoint_id, E2E_TASKS))
                say(f"end to end {endpoint.label}: {figures[endpoint.label][-1]:,.0f}/s")
            stack.stop_service()
    finally:
        ours.stop()
        official.stop()
        stack.stop_service()
    return {name: median(values) for name, values in figures.items()}


def print_table(rows: list, ceiling: float, kills: dict[str, float], e2e: dict[str, float] | None = None) -> None:
    print(f"\nOurs against the official globus-compute-endpoint {OFFICIAL_VERSION} (same RabbitMQ, "
          f"{WORKERS} workers, medians of alternating rounds)")
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'measurement':<{width}}{'ours':>12}{'official':>12}{'ours/official':>15}")
    for name, ours, official, better in rows:
        ratio = ours / official if official else float("nan")
        print(f"{name:<{width}}{ours:>12,.2f}{official:>12,.2f}{ratio:>14.2f}{' ' if better == 'higher' else '*'}")
    print("(* lower is better)")
    print(f"broker ceiling: echo consumer republishing with per-message confirms: {ceiling:,.0f} messages/s")
    if e2e:
        print(f"SDK Executor end to end against the null system (service answering at once, echo consumer): "
              f"{e2e['ceiling']:,.0f} tasks/s; ours/ceiling {e2e['ours'] / e2e['ceiling']:.2f}, "
              f"official/ceiling {e2e['official'] / e2e['ceiling']:.2f}")
    for role, seconds in kills.items():
        print(f"ours: kill -9 of the {role} -> next result in {seconds:.3f} s")


def main() -> None:
    try:
        amqp_ok = subprocess.run(["rabbitmqctl", "-q", "status"], capture_output=True).returncode == 0
    except FileNotFoundError:
        amqp_ok = False
    if not amqp_ok:
        print("\nside by side: skipped (needs a local RabbitMQ and rabbitmqctl)")
        return
    official_venv()
    port = 5000
    stack = Stack(port)
    rows: list = []
    extras: dict = {}
    try:
        ceiling = echo_ceiling(stack.broker_url, 2000)
        for engine in os.environ.get("BENCH_ENGINES", ",".join(ENGINES)).split(","):
            compare_engine(stack, engine, rows, extras)
        add_row(rows, ("`globus-compute-endpoint list`, s", *list_wall_time(stack), "lower"))
        e2e = end_to_end(stack)
        add_row(rows, (f"SDK Executor end to end, tasks/s (N={E2E_TASKS:,})", e2e["ours"], e2e["official"],
                       "higher"))
        add_row(rows, ("SDK Executor end to end / null-system ceiling", e2e["ours"] / e2e["ceiling"],
                       e2e["official"] / e2e["ceiling"], "higher"))
        extras["ceiling"] = e2e
    finally:
        stack.close()
    from .replicas import one_against_two

    replicas = one_against_two(max(1, ROUNDS - 1))
    print_table(rows, ceiling, extras.get("kill", {}), extras.get("ceiling"))
    print(f"compute-service replicas on one PostgreSQL and one vhost, SDK Executor end to end "
          f"(2 SDK clients, N={E2E_TASKS:,}): one replica {replicas['one']:,.0f} tasks/s, two replicas "
          f"{replicas['two']:,.0f} tasks/s (two/one {replicas['two'] / replicas['one']:.2f})")
    from .chart import draw

    draw(rows, f"compute-endpoint against the official globus-compute-endpoint {OFFICIAL_VERSION}, same machine, "
               "same RabbitMQ, one `make bench` run")


if __name__ == "__main__":
    main()
