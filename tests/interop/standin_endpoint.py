"""A minimal stand-in endpoint for service tests: consume <id>.tasks, run, publish Results."""

from __future__ import annotations

import threading
import traceback

import kombu

from compute_endpoint.protocol import messages
from compute_endpoint.protocol.serialize import deserialize, serialize_from_list, unpack_buffers


class StandInEndpoint(threading.Thread):
    def __init__(self, registration: dict):
        super().__init__(daemon=True)
        self.registration = registration
        self.stopping = threading.Event()
        self.handled = 0

    def __enter__(self) -> StandInEndpoint:
        self.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stopping.set()
        self.join(timeout=10)

    def run(self) -> None:
        task_info = self.registration["task_queue_info"]
        result_info = self.registration["result_queue_info"]
        publish_kwargs = dict(result_info["queue_publish_kwargs"])
        properties = publish_kwargs.pop("properties", {})
        with kombu.Connection(task_info["connection_url"]) as connection:
            producer = kombu.Producer(connection.channel())
            queue = kombu.Queue(task_info["queue"], no_declare=True)

            arrived: list = []

            def on_task(_body, message):
                arrived.append(message)

            # Tasks are answered from the loop, not the callback: py-amqp reads waiting frames
            # (and so runs the callback again) inside each publish, which a burst of tasks
            # would turn into a recursion as deep as the burst.
            with kombu.Consumer(connection.channel(), [queue], callbacks=[on_task], accept=None):
                while not self.stopping.is_set():
                    try:
                        connection.drain_events(timeout=0.2)
                    except TimeoutError:
                        pass
                    while arrived:
                        message = arrived.pop(0)
                        producer.publish(messages.pack(self.execute(message.body)), **publish_kwargs, **properties)
                        message.ack()
                        self.handled += 1

    @staticmethod
    def execute(body: bytes) -> messages.Result:
        task = messages.unpack(body)
        try:
            fn, args, kwargs = (deserialize(b) for b in unpack_buffers(task.task_buffer))
            return messages.Result(task_id=task.task_id, data=serialize_from_list(fn(*args, **kwargs), None))
        except Exception as exc:
            return messages.Result(
                task_id=task.task_id, data="".join(traceback.format_exception(exc)),
                error_details=messages.ResultErrorDetails("RemoteExecutionError", repr(exc)))
