"""Submit functions to an endpoint through the official globus-compute-sdk, against a
local compute-service (http://localhost:5000), and print the results.

    compute-service token create --identity me        # once; keep the token
    globus-compute-endpoint login --service http://localhost:5000 --token TOKEN
    globus-compute-endpoint start my_endpoint         # prints its id
    python examples/submit_functions.py --endpoint-id ID --token TOKEN

With the service on RabbitMQ it uses the SDK's Executor (futures); with --poll, or with
the service's embedded broker, it uses the SDK's Client and polls.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def slow_square(x):
    import time

    time.sleep(0.1)
    return x * x


def where():
    import os
    import platform

    return f"{platform.node()}, pid {os.getpid()}, task {os.environ.get('GC_TASK_UUID')}"


def client_for(token: str):
    import globus_sdk
    from globus_compute_sdk import Client
    from globus_compute_sdk.serialize import PureSourceDill

    # Functions defined in a script are sent as source: the endpoint cannot import it.
    return Client(local_compute_services=True, authorizer=globus_sdk.AccessTokenAuthorizer(token),
                  code_serialization_strategy=PureSourceDill())


def with_executor(client, endpoint_id: str, n: int) -> list:
    from globus_compute_sdk import Executor

    with Executor(endpoint_id=endpoint_id, client=client) as executor:
        print("ran on:", executor.submit(where).result(timeout=120))
        return [f.result(timeout=120) for f in [executor.submit(slow_square, i) for i in range(n)]]


def with_polling(client, endpoint_id: str, n: int) -> list:
    function_id = client.register_function(slow_square)
    batch = client.create_batch()
    for i in range(n):
        batch.add(function_id, args=(i,))
    task_ids = client.batch_run(endpoint_id, batch)["tasks"][function_id]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        results = client.get_batch_result(task_ids)
        if len(results) == n and not any(r["pending"] for r in results.values()):
            return [results[t]["result"] for t in task_ids]
        time.sleep(0.2)
    raise SystemExit("no results within 120 s; is the endpoint running? (globus-compute-endpoint list)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--endpoint-id", required=True)
    parser.add_argument("--token", default=os.environ.get("COMPUTE_SERVICE_TOKEN"),
                        help="a compute-service token (default: $COMPUTE_SERVICE_TOKEN)")
    parser.add_argument("-n", type=int, default=10, help="how many squares to compute")
    parser.add_argument("--poll", action="store_true", help="use the Client's polling, not the Executor")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("a token is needed: --token or $COMPUTE_SERVICE_TOKEN")
    client = client_for(args.token)
    started = time.monotonic()
    values = (with_polling if args.poll else with_executor)(client, args.endpoint_id, args.n)
    print(f"squares: {values}")
    print(f"{args.n} results in {time.monotonic() - started:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
