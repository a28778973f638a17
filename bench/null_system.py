"""The ceiling of the SDK and the broker on this machine: the official SDK Executor against a
null system, a minimal service that answers each submit at once (publishing its tasks
without confirms and storing nothing) and an echo consumer that turns each task message
into its result without running anything. Whatever our stack reaches end to end is measured
against this, in the same run.

    python -m bench.null_system serve AMQP_URL PORT     the null service
    python -m bench.null_system echo AMQP_URL           the echo consumer
"""

from __future__ import annotations

import json
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import amqp

from compute_endpoint.protocol import messages
from compute_endpoint.protocol.serialize import serialize

TASK_QUEUE = "null.tasks"
QUEUE_PREFIX = "tg_null_"
# As compute-service declares task group queues, so the SDK's watcher finds what it expects.
TASK_GROUP_QUEUE_ARGUMENTS = {"x-expires": 6 * 3600 * 1000}


def connect(url: str) -> amqp.Connection:
    credentials, _, rest = url.removeprefix("amqp://").rpartition("@")
    user, _, password = credentials.partition(":")
    host, _, vhost = rest.partition("/")
    connection = amqp.Connection(host=host, userid=user or "guest", password=password or "guest",
                                 virtual_host=vhost.replace("%2F", "/") or "/")
    connection.connect()
    return connection


class NullService(BaseHTTPRequestHandler):
    """What the SDK Executor calls, answered at once."""

    broker_url = ""
    channel: amqp.Channel
    lock = threading.Lock()
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.startswith("/v2/version"):
            self.answer({"api": "1.0.0", "min_sdk_version": "2.0.0", "min_ep_version": "2.0.0"})
        elif self.path.startswith("/v2/get_amqp_result_connection_url"):
            self.answer({"connection_url": self.broker_url, "queue_prefix": QUEUE_PREFIX})
        else:
            self.answer({"error": f"the null service has no {self.path}"}, 404)

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path == "/v3/functions":
            self.answer({"function_uuid": str(uuid.uuid4())})
        elif self.path.startswith("/v3/endpoints/") and self.path.endswith("/submit"):
            self.answer(self.submit(body))
        else:
            self.answer({"error": f"the null service has no {self.path}"}, 404)

    def submit(self, body: dict) -> dict:
        group = str(body.get("task_group_id") or uuid.uuid4())
        reply_to = f"{QUEUE_PREFIX}{group}"
        ids: dict[str, list[str]] = {}
        with self.lock:
            if body.get("create_queue"):
                self.channel.queue_declare(reply_to, durable=True, auto_delete=False,
                                           arguments=TASK_GROUP_QUEUE_ARGUMENTS)
            for function_id, payloads in body["tasks"].items():
                for payload in payloads:
                    task_id = str(uuid.uuid4())
                    ids.setdefault(function_id, []).append(task_id)
                    self.channel.basic_publish(
                        amqp.Message(payload.encode(), delivery_mode=2, reply_to=reply_to,
                                     application_headers={"task_uuid": task_id}),
                        exchange="", routing_key=TASK_QUEUE)
        return {"request_id": str(uuid.uuid4()), "task_group_id": group, "endpoint_id": self.path.split("/")[3],
                "tasks": ids}

    def answer(self, document: dict, status: int = 200) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(url: str, port: int) -> None:
    connection = connect(url)
    NullService.channel = connection.channel()
    NullService.channel.queue_declare(TASK_QUEUE, durable=True, auto_delete=False)
    NullService.broker_url = url
    ThreadingHTTPServer(("127.0.0.1", port), NullService).serve_forever()


def echo(url: str) -> None:
    """Each task message becomes the Result of a function that returned None."""
    connection = connect(url)
    channel = connection.channel()
    channel.queue_declare(TASK_QUEUE, durable=True, auto_delete=False)
    channel.basic_qos(0, 1000, False)
    returned_none = serialize(None)

    arrived: list[amqp.Message] = []
    # Answered from the loop, not the callback: py-amqp reads waiting frames (and so runs
    # this callback again) inside each publish.
    channel.basic_consume(TASK_QUEUE, callback=arrived.append)
    while True:
        connection.drain_events()
        while arrived:
            message = arrived.pop(0)
            task_id = message.application_headers["task_uuid"]
            result = messages.pack(messages.Result(task_id=uuid.UUID(task_id), data=returned_none))
            channel.basic_publish(amqp.Message(result, delivery_mode=2), exchange="",
                                  routing_key=message.properties["reply_to"])
            channel.basic_ack(message.delivery_tag)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        echo(sys.argv[2])
