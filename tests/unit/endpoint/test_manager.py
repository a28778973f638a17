"""The template-capable endpoint's dispatcher: its caps on user endpoints, fed the start
commands and the tree states the supervisor would give it."""

from __future__ import annotations

import json
import uuid

import pytest

from compute_endpoint.endpoint.manager import COMMAND_LINK, ManagerDispatcher
from compute_endpoint.protocol import commands
from compute_endpoint.supervisor.control import SUPERVISOR, StartChild
from compute_endpoint.supervisor.states import ChildState
from compute_endpoint.supervisor.status import ChildStatus, TreeStatus
from compute_endpoint.workers.pipe_messages import AckCommand, CommandReceived, PublishFailureNotice
from compute_endpoint.workers.settings import ManagerSettings, PublishTarget

TEMPLATE = "engine:\n  type: ThreadPoolEngine\n  max_workers: {{ workers|default(1) }}\n"
URL = "amqp://guest:guest@127.0.0.1:5672/"


def creds(endpoint_id: str) -> dict:
    info = {"connection_url": URL, "queue": f"{endpoint_id}.tasks"}
    publish = {"connection_url": URL, "exchange": "results", "queue": "results"}
    return {"endpoint_id": endpoint_id, "task_queue_info": info, "result_queue_info": publish,
            "heartbeat_queue_info": publish}


@pytest.fixture
def dispatcher(tmp_path):
    (tmp_path / "user_config_template.yaml.j2").write_text(TEMPLATE)
    (tmp_path / "user_config_schema.json").write_text(json.dumps({"type": "object"}))
    settings = ManagerSettings(endpoint_id=str(uuid.uuid4()), endpoint_name="tc", log_file=str(tmp_path / "log"),
                               debug=False, command_url=URL, command_queue="q",
                               heartbeats=PublishTarget(URL, "heartbeats", "heartbeats"),
                               max_user_endpoints=2, max_user_endpoint_starts=1)
    return ManagerDispatcher(settings, tmp_path, owner_id=None, debug=False)


class Deliveries:
    def __init__(self):
        self.tag = 0

    def start(self, name: str, options: dict | None = None) -> CommandReceived:
        self.tag += 1
        endpoint_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, name))
        command = commands.StartUserEndpoint(name=name, endpoint_id=endpoint_id, amqp_creds=creds(endpoint_id),
                                             user_opts=options or {}, user_runtime={}, identities=frozenset())
        return CommandReceived("g1", self.tag, command)


def tree(**states: str) -> TreeStatus:
    children = {COMMAND_LINK: ChildStatus(ChildState.RUNNING, 1, 0.0, 0)}
    children.update({name: ChildStatus(ChildState(state), 1, 0.0, 0) for name, state in states.items()})
    return TreeStatus(children)


def started(routed) -> list[str]:
    return [m.spec.name for to, m in routed if to == SUPERVISOR and isinstance(m, StartChild)]


def acked(routed) -> list[int]:
    return [m.delivery_tag for to, m in routed if to == COMMAND_LINK and isinstance(m, AckCommand)]


def test_starts_wait_their_turn_unacknowledged_and_go_as_room_opens(dispatcher):
    deliveries = Deliveries()
    for name in ("a", "b", "c"):
        assert list(dispatcher.route(COMMAND_LINK, deliveries.start(name))) == []  # held, not yet acknowledged
    first = list(dispatcher.tick(0.0, tree()))
    assert started(first) == ["a"] and acked(first) == [1]  # one start at a time
    assert list(dispatcher.tick(0.3, tree(a="starting"))) == []
    second = list(dispatcher.tick(0.6, tree(a="running")))
    assert started(second) == ["b"] and acked(second) == [2]
    assert list(dispatcher.tick(0.9, tree(a="running", b="running"))) == []  # two running: the cap
    waiting = dispatcher.user_endpoints()
    assert waiting["c"]["state"] == "waiting" and dispatcher.user_endpoint_limits() == {
        "running": 2, "max": 2, "starting": 0, "max_starts": 1, "waiting": 1}
    third = list(dispatcher.tick(1.2, tree(b="running")))  # a left (idle)
    assert started(third) == ["c"] and acked(third) == [3]
    assert dispatcher.waiting == {}


def test_a_newer_start_for_a_waiting_user_endpoint_replaces_it_and_the_older_is_acknowledged(dispatcher):
    deliveries = Deliveries()
    dispatcher.route(COMMAND_LINK, deliveries.start("a"))
    dispatcher.route(COMMAND_LINK, deliveries.start("b"))
    newer = list(dispatcher.route(COMMAND_LINK, deliveries.start("b", {"workers": 2})))
    assert acked(newer) == [2]
    assert list(dispatcher.waiting) == ["a", "b"] and dispatcher.waiting["b"].command.user_opts == {"workers": 2}


def test_a_start_for_a_user_endpoint_already_running_is_acknowledged_without_counting(dispatcher):
    deliveries = Deliveries()
    dispatcher.route(COMMAND_LINK, deliveries.start("a"))
    routed = list(dispatcher.tick(0.0, tree(a="running", b="running")))
    assert started(routed) == [] and acked(routed) == [1] and dispatcher.waiting == {}


def test_a_start_that_cannot_render_fails_its_tasks_and_frees_its_place(dispatcher, tmp_path):
    (tmp_path / "user_config_schema.json").write_text(json.dumps(
        {"type": "object", "properties": {"workers": {"type": "integer"}}}))
    deliveries = Deliveries()
    dispatcher.route(COMMAND_LINK, deliveries.start("bad", {"workers": "many"}))
    dispatcher.route(COMMAND_LINK, deliveries.start("good"))
    first = list(dispatcher.tick(0.0, tree()))
    assert [type(m) for _, m in first] == [PublishFailureNotice, AckCommand, StartChild, AckCommand]
    assert started(first) == ["good"] and acked(first) == [1, 2] and dispatcher.waiting == {}


def test_the_template_and_schema_come_from_where_the_config_puts_them(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "t.yaml.j2").write_text("engine:\n  type: ProcessPoolEngine\n  max_workers: {{ workers }}\n"
                                    "display_name: {{ _GC.parent_config.display_name }}\n")
    (site / "s.json").write_text(json.dumps({"type": "object", "properties": {"workers": {"type": "integer"}}}))
    settings = ManagerSettings(endpoint_id=str(uuid.uuid4()), endpoint_name="tc", log_file=str(tmp_path / "log"),
                               debug=False, command_url=URL, command_queue="q",
                               heartbeats=PublishTarget(URL, "heartbeats", "heartbeats"),
                               template_path=str(site / "t.yaml.j2"), schema_path=str(site / "s.json"),
                               parent_config={"display_name": "Site"})
    dispatcher = ManagerDispatcher(settings, tmp_path, owner_id=None, debug=False)
    deliveries = Deliveries()
    dispatcher.route(COMMAND_LINK, deliveries.start("a", {"workers": 3}))
    [start] = [m for to, m in dispatcher.tick(0.0, tree()) if isinstance(m, StartChild)]
    assert "type: ProcessPoolEngine" in start.config.config_text and "display_name: Site" in start.config.config_text
    dispatcher.route(COMMAND_LINK, deliveries.start("b", {"workers": "three"}))  # the configured schema refuses it
    [notice] = [m for to, m in dispatcher.tick(0.3, tree(a="running")) if isinstance(m, PublishFailureNotice)]
    assert b"user option workers" in notice.packed and "b" not in dispatcher.waiting
