"""Fixtures shared by every test: an isolated endpoint base directory and CLI runners."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

BIN_DIR = Path(sys.executable).parent

# The SDK's result-watcher threads outlive the tests that stopped their service and log their
# retries, with tracebacks, from their own threads: their records stop at a handler of their own
# and never reach the terminal or pytest's capture. Formatting one there was not harmless: on
# CPython 3.11, a traceback's carets are found with ast.parse, and two threads parsing at once
# corrupt the ast module's shared recursion counter (CPython gh-106905), which failed the
# schemathesis test running beside them with "AST constructor recursion depth mismatch".
import logging  # noqa: E402

for _name in ("globus_compute_sdk", "pika"):
    logging.getLogger(_name).addHandler(logging.NullHandler())
    logging.getLogger(_name).propagate = False

from tests.local_users import local_users  # noqa: E402, F401 - a fixture of the multi-user tests


@pytest.hookimpl(optionalhook=True)  # xdist's hook; the exclusive part runs without xdist
def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (make test): two workers a core, at most 16. Most tests spend part of their time
    waiting on what they started (an endpoint's children starting, a restart's backoff, a
    broker coming back), when a worker a core leaves its core idle: on this project's 2-core
    machine the parallel part took 9:33 with 2 workers and 7:54 with 4 (the cores 96-99% busy)."""
    return max(2, min(16, 2 * (os.cpu_count() or 1)))


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the group marks
def pytest_collection_modifyitems(items):
    """Tests that take turns on one thing go to one xdist worker, one after another (make test
    runs --dist loadgroup), so the other workers never sit idle waiting for its lock: port 5000
    (where the official SDK and endpoint look for a local service) and the two-node cluster
    (whose nodes each test wants to itself)."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "sdk_port" in fixtures:
            item.add_marker(pytest.mark.xdist_group("sdk-port-5000"))
        elif "cluster_conf" in fixtures:
            item.add_marker(pytest.mark.xdist_group("two-node-cluster"))


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty GLOBUS_COMPUTE_USER_DIR, so no test touches ~/.globus_compute."""
    base = tmp_path / "gc"
    monkeypatch.setenv("GLOBUS_COMPUTE_USER_DIR", str(base))
    return base


@pytest.fixture
def cli(user_dir: Path):
    """Invoke the CLI in-process through click's runner."""
    from compute_endpoint.endpoint.cli import app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def cli_process(user_dir: Path):
    """Run the installed console script as a real subprocess."""
    script = shutil.which("globus-compute-endpoint", path=str(BIN_DIR)) or shutil.which(
        "globus-compute-endpoint"
    )
    assert script, "globus-compute-endpoint is not installed next to this Python"

    def run(*args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        env = dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(user_dir))
        return subprocess.run([script, *args], input=input, capture_output=True, text=True,
                              timeout=timeout, env=env)

    return run


# ---------------------------------------------------------------- real services

RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    import kombu

    try:
        with kombu.Connection(RABBITMQ_URL, connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:
        pytest.fail(f"RabbitMQ does not answer at {RABBITMQ_URL} ({exc}); .ci/run starts it")
    return RABBITMQ_URL


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    name = f"cs_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as db:
            db.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL does not answer at {POSTGRES_ADMIN_URL} ({exc}); .ci/run starts it")
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as db:
        db.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


class RunningService:
    """A real `compute-service serve` subprocess, on the given port or a free one. A free port
    can be taken by another test's process between finding it and the service binding it (the
    xdist workers start many listeners); then the service starts again on another."""

    BIND_ATTEMPTS = 3

    def __init__(self, data_dir: Path, db_url: str | None, broker_url: str, port: int | None = None,
                 public_broker_url: str | None = None, extra_args: list[str] = ()):
        self.data_dir, self.db_url = data_dir, db_url
        self.log = data_dir / "service.log"
        db_args = ["--db", db_url] if db_url else []
        if public_broker_url:
            db_args += ["--public-broker-url", public_broker_url]
        for attempt in range(1, self.BIND_ATTEMPTS + 1):
            self.port = port or free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            self.process = subprocess.Popen(
                [str(BIN_DIR / "compute-service"), "serve", "--port", str(self.port), "--data-dir", str(data_dir),
                 "--broker", broker_url, *db_args, *extra_args],
                stdout=self.log.open("w"), stderr=subprocess.STDOUT,
            )
            try:
                self._wait_until_up()
                return
            except RuntimeError:
                taken = "address already in use" in self.log.read_text()
                if port is not None or not taken or attempt == self.BIND_ATTEMPTS:
                    raise

    def _wait_until_up(self, timeout: float = 30) -> None:
        import time

        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"compute-service exited: {self.log.read_text()}")
            if self._listening():  # ours, not another process that holds the port
                requests.get(f"{self.url}/v2/version", timeout=5).raise_for_status()
                return
            time.sleep(0.1)
        raise RuntimeError(f"compute-service did not answer in {timeout} s: {self.log.read_text()}")

    def _listening(self) -> bool:
        import psutil

        try:
            connections = psutil.Process(self.process.pid).net_connections("tcp")
        except psutil.NoSuchProcess:
            return False
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.port for c in connections)

    def token(self, identity: str) -> str:
        db_args = ["--db", self.db_url] if self.db_url else []
        out = subprocess.run([str(BIN_DIR / "compute-service"), "token", "create", "--identity", identity,
                              "--data-dir", str(self.data_dir), *db_args],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def sdk_port():
    """Port 5000, where the official SDK's `local` environment looks, held by one test at a
    time through a file lock that all xdist workers share."""
    import tempfile

    from filelock import FileLock

    with FileLock(Path(tempfile.gettempdir()) / "compute-endpoint-tests-port-5000.lock", timeout=600):
        yield 5000


class VhostAdmin:
    """Makes and removes RabbitMQ vhosts: through the management API where it answers (a
    hundredth of the time), else with rabbitmqctl (an Erlang VM started per call)."""

    API = "http://127.0.0.1:15672/api"
    AUTH = ("guest", "guest")

    def __init__(self):
        import requests

        try:
            self.api = requests.get(f"{self.API}/whoami", auth=self.AUTH, timeout=2).ok
        except requests.RequestException:
            self.api = False

    def create(self, vhost: str) -> None:
        if self.api:
            self._call("put", f"vhosts/{vhost}")
            self._call("put", f"permissions/{vhost}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
            return
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True)
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                       check=True, capture_output=True)

    def delete(self, vhost: str) -> None:
        """The vhost, and the per-endpoint broker users the service made in it."""
        if self.api:
            import requests

            permissions = requests.get(f"{self.API}/vhosts/{vhost}/permissions", auth=self.AUTH, timeout=10)
            users = {row["user"] for row in permissions.json()} if permissions.ok else set()
        else:
            listed = subprocess.run(["rabbitmqctl", "-q", "list_permissions", "-p", vhost, "--no-table-headers"],
                                    capture_output=True, text=True).stdout
            users = {line.split()[0] for line in listed.splitlines() if line.strip()}
        for user in {u for u in users if u.startswith(("ep-", "sdk-"))}:
            self._remove("users", user)
        self._remove("vhosts", vhost)

    def _remove(self, kind: str, name: str) -> None:
        if self.api:
            from urllib.parse import quote

            self._call("delete", f"{kind}/{quote(name, safe='')}")
        else:
            subprocess.run(["rabbitmqctl", "-q", f"delete_{kind[:-1]}", name], capture_output=True)

    def _call(self, method: str, path: str, body: dict | None = None) -> None:
        import requests

        response = requests.request(method, f"{self.API}/{path}", auth=self.AUTH, json=body, timeout=30)
        if method == "put":
            response.raise_for_status()


@pytest.fixture(scope="session")
def vhost_admin(rabbitmq_url) -> VhostAdmin:
    return VhostAdmin()


@pytest.fixture
def broker_url(rabbitmq_url, vhost_admin):
    """A RabbitMQ vhost of this test's own, so parallel tests never share a queue."""
    import uuid

    vhost = f"test-{uuid.uuid4().hex[:12]}"
    vhost_admin.create(vhost)
    yield rabbitmq_url.rsplit("/", 1)[0] + f"/{vhost}"
    vhost_admin.delete(vhost)


@pytest.fixture
def rabbitmq_management(rabbitmq_url) -> str:
    """RabbitMQ's management API (.ci/run enables the plugin); skip where it does not answer."""
    import requests

    api = "http://127.0.0.1:15672/api"
    try:
        requests.get(f"{api}/whoami", auth=("guest", "guest"), timeout=5).raise_for_status()
    except requests.RequestException as exc:
        pytest.skip(f"RabbitMQ's management API does not answer ({exc}); "
                    "enable it: rabbitmq-plugins enable rabbitmq_management")
    return api


@pytest.fixture
def start_service(tmp_path, broker_url):
    """Start compute-service subprocesses; each is stopped at the end of the test."""
    started: list[RunningService] = []

    def start(db_url: str | None = None, port: int | None = None, public_broker_url: str | None = None,
              extra_args: list[str] = ()) -> RunningService:
        data_dir = tmp_path / f"service{len(started)}"
        data_dir.mkdir()
        service = RunningService(data_dir, db_url, broker_url, port, public_broker_url, extra_args)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
