"""The result link against the real RabbitMQ: a result is reported confirmed only after the
broker confirmed it, a large result's file goes with its confirm, and what an earlier link
left in unacked_results/ is published by the next one."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from pathlib import Path

import kombu
import pytest

from compute_endpoint.supervisor.control import Stop
from compute_endpoint.supervisor.pipe import ParentPipe
from compute_endpoint.workers.payloads import UNACKED_RESULTS, PayloadStore
from compute_endpoint.workers.pipe_messages import PublishResults, PublishStatus, ResultsConfirmed, TaskResult
from compute_endpoint.workers.result_link import ResultLink
from compute_endpoint.workers.settings import PublishTarget, WorkerSettings

TASK_1, TASK_2, TASK_LARGE, LEFT_BEHIND = (str(uuid.uuid4()) for _ in range(4))
RESULTS_QUEUE = "test-results"
STATUS_QUEUE = "test-status"


def settings_for(broker_url: str, run_dir: Path) -> WorkerSettings:
    return WorkerSettings(
        endpoint_id=str(uuid.uuid4()), endpoint_name="ep", log_file=str(run_dir / "endpoint.log"), debug=False,
        task_queue_url=broker_url, task_queue="unused",
        results=PublishTarget(broker_url, "", RESULTS_QUEUE), heartbeats=PublishTarget(broker_url, "", STATUS_QUEUE),
        engine={}, run_dir=str(run_dir))


class RunningLink:
    """A ResultLink in a thread of this process, with the supervisor's end of its pipe."""

    def __init__(self, settings: WorkerSettings):
        self.supervisor, child = multiprocessing.Pipe()
        self.link = ResultLink(ParentPipe(child), settings)
        self.thread = threading.Thread(target=self.link.run, daemon=True)
        self.thread.start()
        self.confirmed: list[str] = []

    def wait_confirmed(self, count: int, timeout: float = 20) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.confirmed) < count and time.monotonic() < deadline:
            if self.supervisor.poll(0.1):
                message = self.supervisor.recv()
                if isinstance(message, ResultsConfirmed):
                    self.confirmed += message.task_ids
        return self.confirmed

    def stop(self) -> None:
        self.supervisor.send(Stop("test over"))
        self.thread.join(15)
        assert not self.thread.is_alive()


def queued(broker_url: str, queue: str) -> list[bytes]:
    bodies = []
    with kombu.Connection(broker_url) as connection:
        channel = connection.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            bodies.append(message.body)
    return bodies


@pytest.fixture
def queues(broker_url):
    with kombu.Connection(broker_url) as connection:
        channel = connection.channel()
        for name in (RESULTS_QUEUE, STATUS_QUEUE):
            kombu.Queue(name, durable=True).bind(channel).declare()
    return broker_url


def test_results_and_status_reports_are_published_and_confirmed(queues, tmp_path):
    running = RunningLink(settings_for(queues, tmp_path))
    large = b"L" * (200 * 1024)
    stored = PayloadStore(tmp_path / UNACKED_RESULTS).write(TASK_LARGE, large)
    running.supervisor.send(PublishResults((TaskResult(TASK_1, b"one"), TaskResult(TASK_2, b"two"),
                                            TaskResult(TASK_LARGE, stored))))
    running.supervisor.send(PublishStatus(b"status"))
    assert sorted(running.wait_confirmed(3)) == sorted([TASK_1, TASK_2, TASK_LARGE])
    running.stop()
    assert sorted(queued(queues, RESULTS_QUEUE)) == sorted([b"one", b"two", large])
    assert queued(queues, STATUS_QUEUE) == [b"status"]
    assert not Path(stored.path).exists()  # its file goes once the broker has it


def test_what_an_earlier_link_left_on_disk_is_published_by_the_next(queues, tmp_path):
    spool = PayloadStore(tmp_path / UNACKED_RESULTS)
    spool.write(LEFT_BEHIND, b"from the last link")
    running = RunningLink(settings_for(queues, tmp_path))
    assert running.wait_confirmed(1) == [LEFT_BEHIND]
    running.stop()
    assert queued(queues, RESULTS_QUEUE) == [b"from the last link"]
    assert spool.stored() == []


def test_results_wait_on_disk_while_the_broker_cannot_be_reached(tmp_path):
    unreachable = "amqp://guest:guest@127.0.0.1:1//"
    running = RunningLink(settings_for(unreachable, tmp_path))
    running.supervisor.send(PublishResults((TaskResult(TASK_1, b"one"),)))
    time.sleep(1.0)  # it tries, backs off, and answers the supervisor meanwhile
    assert running.wait_confirmed(1, timeout=0.5) == []
    running.stop()
    assert [task_id for task_id, _ in PayloadStore(tmp_path / UNACKED_RESULTS).stored()] == [TASK_1]
