"""`make demo`: the whole system on this machine, end to end.

1. start compute-service (the local Compute web service) on http://localhost:5000,
   with RabbitMQ at 127.0.0.1:5672 where it answers, else with the embedded broker
   (or with the embedded broker anyway: `demo.py --embedded`);
2. issue a token, log the endpoint in, configure and start an endpoint;
3. submit functions through the official globus-compute-sdk and print the results: with
   its Executor over RabbitMQ, or with its Client's polling over the embedded broker;
4. show the endpoint's process tree; stop everything that was started.

Everything lives in a scratch directory that is removed at the end.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
SERVICE_URL = "http://localhost:5000"  # where the SDK's `local` environment looks
BROKER = ("127.0.0.1", 5672)

DEMO_CONFIG = """\
display_name: compute-endpoint demo
engine:
  type: ThreadPoolEngine
  max_workers: 4
"""


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def run(*argv: str, env: dict, check: bool = True, secret: str | None = None) -> subprocess.CompletedProcess:
    shown = " ".join(argv)
    print("$ " + (shown.replace(secret, "***") if secret else shown), flush=True)
    result = subprocess.run([str(BIN / argv[0]), *argv[1:]], env=env, text=True, capture_output=True)
    output = (result.stdout + result.stderr).rstrip()
    print(output.replace(secret, "***") if secret else output, flush=True)
    if check and result.returncode:
        raise SystemExit(f"demo: '{' '.join(argv)}' failed with exit status {result.returncode}")
    return result


def answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def wait_for_service(process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"demo: compute-service exited:\n{log.read_text()}")
        if answers("127.0.0.1", 5000):
            return
        time.sleep(0.1)
    raise SystemExit("demo: compute-service did not answer within 30 s")


def platform_info():
    import os
    import platform

    return f"{platform.node()} pid {os.getpid()} task {os.environ.get('GC_TASK_UUID')}"


def fails():
    return 1 / 0


def square(x):
    return x * x


def sdk_client(token: str):
    import globus_sdk
    from globus_compute_sdk import Client
    from globus_compute_sdk.serialize import PureSourceDill

    # The endpoint cannot import this script: send the functions' source.
    return Client(local_compute_services=True, authorizer=globus_sdk.AccessTokenAuthorizer(token),
                  code_serialization_strategy=PureSourceDill())


def submit_with_executor(token: str, endpoint_id: str) -> None:
    from globus_compute_sdk import Executor

    client = sdk_client(token)
    started = time.monotonic()
    with Executor(endpoint_id=endpoint_id, client=client) as executor:
        squares = [executor.submit(square, i) for i in range(10)]
        info = executor.submit(platform_info)
        failing = executor.submit(fails)
        print("squares:", [f.result(timeout=60) for f in squares])
        print("ran on:", info.result(timeout=60))
        try:
            failing.result(timeout=60)
        except Exception as exc:
            print("a failing function raised, as it should:", str(exc).strip().splitlines()[-1])
    print(f"12 functions submitted and answered in {time.monotonic() - started:.2f} s")


def submit_with_client(token: str, endpoint_id: str) -> None:
    """The embedded broker has no AMQP for the Executor: the Client submits and polls."""
    from globus_compute_sdk.errors import TaskExecutionFailed

    client = sdk_client(token)
    started = time.monotonic()
    batch = client.create_batch()
    square_id = client.register_function(square)
    for i in range(10):
        batch.add(square_id, args=(i,))
    batch.add(client.register_function(platform_info))
    batch.add(client.register_function(fails))
    task_ids = [t for ids in client.batch_run(endpoint_id, batch)["tasks"].values() for t in ids]
    answered, failing = task_ids[:11], task_ids[11]
    results = poll(lambda: done_or_none(client.get_batch_result(answered), len(answered)))
    print("squares:", [results[t]["result"] for t in answered[:10]])
    print("ran on:", results[answered[10]]["result"])
    try:
        poll(lambda: done_or_none({failing: client.get_task(failing)}, 1))
        print("the failing function did not fail!")
    except TaskExecutionFailed as exc:
        print("a failing function raised, as it should:", str(exc).strip().splitlines()[-1])
    print(f"12 functions submitted and answered in {time.monotonic() - started:.2f} s")


def done_or_none(results: dict, expected: int) -> dict | None:
    finished = [r for r in results.values() if not r["pending"]]
    return results if len(finished) == expected else None


def poll(fetch, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fetch()
        if value is not None:
            return value
        time.sleep(0.2)
    raise SystemExit(f"demo: no results within {timeout} s")


def main(argv: list[str]) -> int:
    embedded = "--embedded" in argv or not answers(*BROKER)
    if answers("127.0.0.1", 5000):
        raise SystemExit("demo: something already listens on port 5000, where the SDK's local environment "
                         "looks for the service; stop it and run make demo again")
    scratch = Path(tempfile.mkdtemp(prefix="compute-endpoint-demo-"))
    env = dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(scratch / "endpoints"),
               COMPUTE_SERVICE_DATA_DIR=str(scratch / "service"), GLOBUS_SDK_SERVICE_URL_COMPUTE=SERVICE_URL)
    service = None
    started_at = time.monotonic()
    try:
        say("1. start the local Compute service")
        token = subprocess.run([str(BIN / "compute-service"), "token", "create", "--identity", "demo-user"],
                               env=env, text=True, capture_output=True, check=True).stdout.strip()
        print("issued a token for identity demo-user (compute-service token create)")
        service_log = scratch / "service.log"
        broker = ["--broker", f"filesystem://{scratch / 'broker'}"] if embedded else []
        if not embedded and not answers("127.0.0.1", 15672):
            # Without RabbitMQ's management API the service cannot make a broker user for each
            # endpoint and client; this demo's only user is you, so it may share its own.
            broker.append("--shared-broker-credentials")
            print("RabbitMQ's management API does not answer: the demo service shares its broker credentials "
                  "(fine for one user; see README, 'The local Compute service')")
        service = subprocess.Popen([str(BIN / "compute-service"), "serve", "--port", "5000", *broker], env=env,
                                   stdout=service_log.open("w"), stderr=subprocess.STDOUT)
        wait_for_service(service, service_log)
        print(f"compute-service is serving {SERVICE_URL} (log: {service_log}), broker: "
              + ("embedded, in " + str(scratch / "broker") if embedded else "RabbitMQ at 127.0.0.1:5672"))

        say("2. log in, configure and start an endpoint")
        run("globus-compute-endpoint", "login", "--token", token, env=env, secret=token)
        run("globus-compute-endpoint", "configure", "demo", env=env)
        (scratch / "endpoints" / "demo" / "config.yaml").write_text(DEMO_CONFIG)
        print("config.yaml:\n" + DEMO_CONFIG.rstrip())
        run("globus-compute-endpoint", "start", "demo", env=env)
        run("globus-compute-endpoint", "list", env=env)
        endpoint_id = (scratch / "endpoints" / "demo" / "endpoint.json").read_text().split('"')[3]

        if embedded:
            say("3. submit functions through the official globus-compute-sdk's Client (polling)")
            submit_with_client(token, endpoint_id)
        else:
            say("3. submit functions through the official globus-compute-sdk's Executor")
            submit_with_executor(token, endpoint_id)

        say("4. the endpoint's process tree (ps x --forest)")
        forest = subprocess.run(["ps", "x", "--forest", "-ww", "-o", "pid,args"], text=True, capture_output=True).stdout
        print("\n".join(line for line in forest.splitlines() if "Globus Compute Endpoint" in line))
    finally:
        say("5. stop everything")
        run("globus-compute-endpoint", "stop", "demo", env=env, check=False)
        if service is not None:
            service.terminate()
            service.wait(timeout=15)
            print("compute-service stopped")
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\ndemo finished in {time.monotonic() - started_at:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
