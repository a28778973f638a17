"""What the tree is given: the children's settings from config and registration, the engine's
options as the config declares them, and the prefetch window."""

from __future__ import annotations

from pathlib import Path

from compute_endpoint.endpoint.config import parse_config
from compute_endpoint.endpoint.tree import MAX_PREFETCH, MIN_PREFETCH, engine_options, prefetch_for, worker_settings

REGISTRATION = {
    "endpoint_id": "0b1f0000-0000-4000-8000-000000000001",
    "task_queue_info": {"connection_url": "amqp://u:p@broker.example.org:5672/vh", "queue": "0b1f.tasks"},
    "result_queue_info": {"connection_url": "amqp://u:p@broker.example.org:5672/vh", "exchange": "results",
                          "queue": "results", "queue_publish_kwargs": {"exchange": "results",
                                                                       "routing_key": "0b1f.results"}},
    "heartbeat_queue_info": {"connection_url": "amqp://u:p@broker.example.org:5672/vh", "exchange": "heartbeats",
                             "queue": "heartbeats"},
    "command_queue_info": {"connection_url": "amqp://u:p@broker.example.org:5672/vh", "queue": "0b1f.commands"},
}


def settings_for(config_text: str, registration: dict = REGISTRATION):
    config = parse_config(config_text)
    return worker_settings("ep", Path("/ep"), Path("/ep/endpoint.log"), config, config_text, registration, False)


def test_settings_come_from_the_registration_and_the_config():
    settings = settings_for("engine: {type: ThreadPoolEngine, max_workers: 2}\namqp_port: 5671\n"
                            "heartbeat_period: 2\nheartbeat_threshold: 90\n")
    assert settings.task_queue_url == "amqp://u:p@broker.example.org:5671/vh"  # amqp_port replaces the port
    assert settings.results.routing_key == "0b1f.results" and settings.results.exchange == "results"
    assert settings.heartbeats.routing_key == "heartbeats"  # no publish kwargs: the queue's name
    assert settings.command_queue == "0b1f.commands"
    assert settings.heartbeat_period_s == 5.0  # raised to the official minimum
    assert settings.broker_silence_s == 90.0


def test_a_service_without_commands_leaves_the_command_queue_out():
    registration = {k: v for k, v in REGISTRATION.items() if k != "command_queue_info"}
    assert settings_for("engine: {type: ThreadPoolEngine}", registration).command_queue == ""


def test_engine_options_are_the_declared_defaults_with_the_executors_own_beside_them():
    config = parse_config("engine: {type: ThreadPoolEngine, thread_name_prefix: t}")
    assert engine_options(config.engine) == {"type": "ThreadPoolEngine", "max_workers": None,
                                             "max_retries_on_system_failure": 0, "task_timeout_s": None,
                                             "label": None, "allowed_serializers": None, "thread_name_prefix": "t"}
    htex = parse_config("engine:\n  type: GlobusComputeEngine\n  max_workers_per_node: 3\n"
                        "  provider: {type: LocalProvider, max_blocks: 2}\n").engine
    options = engine_options(htex)
    assert options["provider"] == {"type": "LocalProvider", "max_blocks": 2}
    assert options["max_workers_per_node"] == 3 and options["encrypted"] is True


def test_the_prefetch_window_covers_every_worker_within_bounds():
    few = parse_config("engine: {type: ThreadPoolEngine, max_workers: 1}").engine
    many = parse_config("engine: {type: ThreadPoolEngine, max_workers: 1000}").engine
    blocks = parse_config("engine:\n  type: GlobusComputeEngine\n  max_workers_per_node: 4\n"
                          "  provider: {type: LocalProvider, max_blocks: 3, nodes_per_block: 2}\n").engine
    assert prefetch_for(few) == MIN_PREFETCH
    assert prefetch_for(many) == MAX_PREFETCH
    assert prefetch_for(blocks) == max(MIN_PREFETCH, 4 * 3 * 2 * 256)
