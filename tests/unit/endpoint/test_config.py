"""The config model: good files load; each bad file names the file, key path and line."""

from __future__ import annotations

import textwrap

import pytest

from compute_endpoint.endpoint.config import (
    ConfigError,
    GlobusComputeEngineConfig,
    GlobusMPIEngineConfig,
    ProcessPoolEngineConfig,
    ThreadPoolEngineConfig,
    default_config_text,
    load_config,
    parse_config,
)


def test_default_config_is_the_documented_one():
    text = default_config_text()
    assert text.splitlines() == [
        "amqp_port: 443",
        "display_name: null",
        "engine:",
        "  type: GlobusComputeEngine",
        "  provider:",
        "    type: LocalProvider",
        "    init_blocks: 1",
        "    max_blocks: 1",
        "    min_blocks: 0",
    ]
    config = parse_config(text)
    assert config.amqp_port == 443
    assert config.display_name is None
    assert isinstance(config.engine, GlobusComputeEngineConfig)
    assert config.engine.provider.type == "LocalProvider"
    assert dict(config.engine.provider.options) == {"init_blocks": 1, "max_blocks": 1, "min_blocks": 0}


def test_display_name_with_yaml_special_characters_round_trips():
    config = parse_config(default_config_text("My: laptop #1"))
    assert config.display_name == "My: laptop #1"


@pytest.mark.parametrize(
    "text, engine_class",
    [
        ("engine: {type: ThreadPoolEngine, max_workers: 4}", ThreadPoolEngineConfig),
        ("engine: {type: ProcessPoolEngine}", ProcessPoolEngineConfig),
        ("engine: {type: GlobusComputeEngine}", GlobusComputeEngineConfig),
        ("engine: {type: GlobusMPIEngine}", GlobusMPIEngineConfig),
    ],
)
def test_each_engine_type_loads(text, engine_class):
    assert isinstance(parse_config(text).engine, engine_class)


def test_full_globus_compute_engine_config_loads():
    config = parse_config(textwrap.dedent("""\
        display_name: Slurm cluster
        amqp_port: 5671
        heartbeat_period: 10
        endpoint_setup: |
          module load python
        endpoint_teardown: echo bye
        engine:
          type: GlobusComputeEngine
          max_workers_per_node: 8
          max_retries_on_system_failure: 2
          address: 127.0.0.1
          worker_port_range: [50000, 50100]
          job_status_kwargs: {strategy_period: 1, max_idletime: 30}
          container_type: custom
          container_cmd_options: bwrap --bind {EXECUTOR_RUNDIR} {EXECUTOR_RUNDIR} {EXECUTOR_LAUNCH_CMD}
          provider:
            type: SlurmProvider
            partition: debug
            account: abc123
            walltime: "00:10:00"
            nodes_per_block: 1
            worker_init: source ~/venv/bin/activate
            launcher: {type: SrunLauncher}
        """))
    engine = config.engine
    assert engine.max_workers_per_node == 8
    assert engine.worker_port_range == (50000, 50100)
    assert engine.job_status_kwargs.strategy_period == 1.0
    assert engine.provider.type == "SlurmProvider"
    assert engine.provider.options["launcher"] == {"type": "SrunLauncher"}
    assert config.endpoint_setup == "module load python\n"


# Each bad config: the text, the key path reported, its line, and a phrase of the message.
BAD_CONFIGS = [
    ("engine: [unclosed", "(top level)", 1, "not valid YAML"),
    ("engine:\n  type: ThreadPoolEngine\n   bad_indent: 1", "(top level)", 3, "not valid YAML"),
    ("", "(top level)", None, "empty file"),
    ("- just\n- a list", "(top level)", None, "got a list"),
    ("display_name: x", "engine", 1, "is required"),
    ("engine: {}", "engine.type", 1, "engine type is missing; accepted: GlobusComputeEngine"),
    ("engine: {type: ThreadPool}", "engine.type", 1, "did you mean 'ThreadPoolEngine'"),
    ("engine: ThreadPoolEngine", "engine", 1, "expected a mapping"),
    ("engine: {type: ThreadPoolEngine}\nengin_setup: x", "engin_setup", 2, "unknown key"),
    ("engine: {type: ThreadPoolEngine}\nendpoint_setpu: x", "endpoint_setpu", 2,
     "did you mean 'endpoint_setup'"),
    ("engine: {type: ThreadPoolEngine}\namqp_port: 70000", "amqp_port", 2, "a TCP port (1 to 65535)"),
    ("engine: {type: ThreadPoolEngine}\namqp_port: '5671'", "amqp_port", 2, "expected an integer"),
    ("engine: {type: GlobusComputeEngine, strategy: {type: Fancy}}", "engine.strategy.type", 1,
     "accepted: SimpleStrategy"),
    ("engine: {type: ThreadPoolEngine, allowed_serializers: [globus_compute_sdk.serialize.JSONData]}",
     "engine.allowed_serializers", 1, "at least one code and one data strategy"),
    ("engine: {type: ThreadPoolEngine, allowed_serializers: [globus_compute_sdk.serialize.PickleCode, "
     "globus_compute_sdk.*Data]}", "engine.allowed_serializers", 1, "is not a serialization strategy one may allow"),
    ("engine: {type: ThreadPoolEngine, allowed_serializers: [globus_compute_sdk.*Code, "
     "globus_compute_sdk.serialize.DillCode, globus_compute_sdk.*Data]}", "engine.allowed_serializers", 1,
     "cannot be mixed"),
    ("engine: {type: GlobusComputeEngine, container_type: docker, container_uri: img,\n"
     "  provider: {type: KubernetesProvider, image: x}}", "engine.container_uri", 1,
     "not compatible with KubernetesProvider"),
    ("engine: {type: ThreadPoolEngine}\nheartbeat_period: 0", "heartbeat_period", 2,
     "a positive number"),
    ("engine: {type: ThreadPoolEngine}\nheartbeat_period: ten", "heartbeat_period", 2,
     "expected a number, got a string"),
    ("engine: {type: ThreadPoolEngine}\ndisplay_name: 12", "display_name", 2,
     "expected a string, got an integer"),
    ("engine: {type: ThreadPoolEngine}\nlocal_compute_services: yes please", "local_compute_services",
     2, "expected a boolean"),
    ("engine:\n  type: ThreadPoolEngine\n  max_workers: '4'", "engine.max_workers", 3,
     "expected an integer, got a string"),
    ("engine:\n  type: ThreadPoolEngine\n  max_workers: -1", "engine.max_workers", 3,
     "a positive integer"),
    ("engine:\n  type: ThreadPoolEngine\n  provider: {type: LocalProvider}", "engine.provider", 3,
     "accepted: allowed_serializers, label, max_retries_on_system_failure, max_workers, task_timeout_s, "
     "thread_name_prefix, type"),
    ("engine:\n  type: ProcessPoolEngine\n  max_retries_on_system_failure: -2",
     "engine.max_retries_on_system_failure", 3, "an integer >= 0"),
    ("engine:\n  type: GlobusComputeEngine\n  container_type: podmann", "engine.container_type", 3,
     "accepted values: docker, podman, podman-hpc, apptainer, singularity, custom, None (did you mean 'podman'?)"),
    ("engine:\n  type: GlobusComputeEngine\n  container_type: podman-hpc", "engine.container_uri", 1,
     "needs container_uri"),
    ("engine:\n  type: GlobusComputeEngine\n  container_type: docker", "engine.container_uri", 1,
     "needs container_uri"),
    ("engine:\n  type: GlobusComputeEngine\n  container_type: custom\n"
     "  container_cmd_options: bwrap {EXECUTOR_LAUNCH_CMD}", "engine.container_cmd_options", 4,
     "missing {EXECUTOR_RUNDIR}"),
    ("engine:\n  type: GlobusComputeEngine\n  worker_port_range: [9000, 8000]",
     "engine.worker_port_range", 3, "low <= high"),
    ("engine:\n  type: GlobusComputeEngine\n  provider:\n    type: SlurmProviderr",
     "engine.provider.type", 4, "did you mean 'SlurmProvider'"),
    ("engine:\n  type: GlobusComputeEngine\n  provider:\n    type: SlurmProvider\n    partiton: debug",
     "engine.provider.partiton", 5, "did you mean 'partition'"),
    ("engine:\n  type: GlobusComputeEngine\n  provider:\n    type: LocalProvider\n    max_blocks: many",
     "engine.provider.max_blocks", 5, "expected a number, got a string"),
    ("engine:\n  type: GlobusComputeEngine\n  provider:\n    type: SlurmProvider\n    exclusive: 3",
     "engine.provider.exclusive", 5, "expected a boolean"),
    ("engine:\n  type: GlobusComputeEngine\n  provider:\n    type: SlurmProvider\n"
     "    launcher: {type: SrunLaunchr}", "engine.provider.launcher.type", 5,
     "did you mean 'SrunLauncher'"),
    ("engine:\n  type: GlobusComputeEngine\n  provider: LocalProvider", "engine.provider", 3,
     "expected a mapping"),
    ("engine:\n  type: GlobusComputeEngine\n  available_accelerators: [gpu0, 1]",
     "engine.available_accelerators.1", 3, "expected a string, got an integer"),
    ("engine:\n  type: GlobusComputeEngine\n  job_status_kwargs: {max_idle: 5}",
     "engine.job_status_kwargs.max_idle", 3, "did you mean 'max_idletime'"),
    # Any HighThroughputExecutor argument passes through, checked against its signature.
    ("engine:\n  type: GlobusComputeEngine\n  worker_logdir: /scratch", "engine.worker_logdir", 3,
     "GlobusComputeEngine has no option 'worker_logdir' (did you mean 'worker_logdir_root'?)"),
    ("engine:\n  type: GlobusComputeEngine\n  poll_period: fast", "engine.poll_period", 3,
     "poll_period: expected an integer, got a string"),
    ("engine:\n  type: GlobusComputeEngine\n  manager_selector: random", "engine.manager_selector", 3,
     "has no option 'manager_selector'"),
    ("engine:\n  type: GlobusComputeEngine\n  strategy: smart", "engine.strategy", 3,
     "accepted values: simple, htex_auto_scale, none"),
    ("engine:\n  type: GlobusComputeEngine\n  encrypted: no-thanks", "engine.encrypted", 3, "a boolean"),
    ("engine:\n  type: GlobusComputeEngine\n  address: 7", "engine.address", 3,
     "expected an address (a string) or a mapping naming one of Parsl's address finders"),
    ("engine:\n  type: GlobusComputeEngine\n  address:\n    type: address_by_interfac\n    ifname: ib0",
     "engine.address.type", 4, "did you mean 'address_by_interface'"),
    ("engine:\n  type: GlobusComputeEngine\n  address: {type: address_by_interface}", "engine.address", 3,
     "address_by_interface needs ifname"),
    ("engine:\n  type: GlobusComputeEngine\n  address: {type: address_by_hostname, ifname: ib0}",
     "engine.address.ifname", 3, "address_by_hostname has no option 'ifname'"),
    ("engine:\n  type: GlobusComputeEngine\n  available_accelerators: -1", "engine.available_accelerators", 3,
     "expected a number of accelerators or a list of their names"),
    ("engine: {type: ThreadPoolEngine}\nmax_task_bytes_in_flight: 12 parsecs", "max_task_bytes_in_flight", 2,
     'a number of bytes of at least 1 MiB: an integer, or a number and a unit (KB, MB, GB, KiB, MiB, GiB)'),
    ("engine: {type: ThreadPoolEngine}\nmax_task_bytes_in_flight: 1000", "max_task_bytes_in_flight", 2,
     "got 1000"),
    ("engine:\n  type: GlobusMPIEngine\n  mpi_launcher: mpirun", "engine.mpi_launcher", 3,
     "'mpirun' is not accepted; accepted values: mpiexec, srun, aprun"),
    ("engine:\n  type: GlobusMPIEngine\n  max_workers_per_node: 4", "engine.max_workers_per_node", 3,
     "GlobusMPIEngine has no option 'max_workers_per_node' (did you mean 'max_workers_per_block'?)"),
    ("engine:\n  type: GlobusMPIEngine\n  max_workers_per_block: 3\n  provider: {type: SlurmProvider, "
     "nodes_per_block: 2}", "engine.max_workers_per_block", 3,
     "max_workers_per_block (3) is more than the provider's nodes_per_block (2)"),
    ("engine:\n  type: GlobusMPIEngine\n  provider:\n    type: SlurmProvider\n    launcher: {type: SrunLauncher}",
     "engine.provider.launcher", 5, "GlobusMPIEngine needs the provider's launcher to be SimpleLauncher"),
]


@pytest.mark.parametrize("text, path, line, phrase", BAD_CONFIGS,
                         ids=[f"{i:02d}-{c[1]}" for i, c in enumerate(BAD_CONFIGS)])
def test_bad_config_names_file_path_line_and_fix(tmp_path, text, path, line, phrase):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(config_file)
    message = str(caught.value)
    assert message.startswith(f"Invalid endpoint configuration in {config_file}:")
    [problem] = [p for p in caught.value.problems if phrase in p.message]
    assert str(problem).startswith(path)
    assert problem.line == line
    assert phrase in message
    assert "Traceback" not in message


def test_every_htex_option_passes_through_beside_the_engines_own():
    config = parse_config(textwrap.dedent("""\
        engine:
          type: GlobusComputeEngine
          address: {type: address_by_interface, ifname: ib0}
          loopback_address: 127.0.0.2
          encrypted: false
          strategy: none
          run_in_sandbox: true
          working_dir: /scratch/tasks
          available_accelerators: 4
          worker_logdir_root: /scratch/logs
          cpu_affinity: block
          drain_period: 600
          poll_period: 5
          address_probe_timeout: 10
          job_status_kwargs: {strategy_period: 1, max_idletime: 30}
        """))
    engine = config.engine
    assert engine.address == {"type": "address_by_interface", "ifname": "ib0"}
    assert (engine.loopback_address, engine.encrypted, engine.strategy) == ("127.0.0.2", False, "none")
    assert (engine.run_in_sandbox, engine.working_dir, engine.available_accelerators) == (True, "/scratch/tasks", 4)
    assert dict(engine.executor_options) == {"worker_logdir_root": "/scratch/logs", "cpu_affinity": "block",
                                             "drain_period": 600, "poll_period": 5, "address_probe_timeout": 10}


def test_defaults_reach_every_node_and_encrypt():
    engine = parse_config(default_config_text()).engine
    assert engine.address is None and engine.encrypted is True
    assert engine.available_accelerators is None
    listed = parse_config("engine: {type: GlobusComputeEngine, available_accelerators: [gpu0, gpu1]}").engine
    assert listed.available_accelerators == ["gpu0", "gpu1"]


def test_several_problems_are_reported_together():
    with pytest.raises(ConfigError) as caught:
        parse_config("amqp_port: 0\nheartbeat_period: -5\nengine: {type: ThreadPoolEngine}")
    assert [".".join(map(str, p.path)) for p in caught.value.problems] == ["amqp_port", "heartbeat_period"]


def test_unreadable_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("text, prefetch", [
    ("engine: {type: ThreadPoolEngine, max_workers: 4}", 2048),
    ("engine: {type: ProcessPoolEngine, max_workers: 16}", 4096),
    ("engine: {type: GlobusComputeEngine, max_workers_per_node: 8, provider: {type: LocalProvider, max_blocks: 2}}",
     4096),
    ("engine: {type: ProcessPoolEngine, max_workers: 1000}", 16384),
    ("engine: {type: ThreadPoolEngine, max_workers: 4}\nprefetch: 10", 10),
    ("engine: {type: GlobusMPIEngine, max_workers_per_block: 2, provider: {type: SlurmProvider, nodes_per_block: 8, "
     "max_blocks: 10}}", 5120),
])
def test_task_prefetch_is_sized_from_the_engine_unless_configured(tmp_path, text, prefetch):
    from compute_endpoint.endpoint.tree import worker_settings

    registration = {"endpoint_id": "e", "task_queue_info": {"connection_url": "amqp://h/%2F", "queue": "e.tasks"},
                     "result_queue_info": {"connection_url": "amqp://h/%2F", "queue_publish_kwargs": {}},
                     "heartbeat_queue_info": {"connection_url": "amqp://h/%2F", "queue_publish_kwargs": {}}}
    settings = worker_settings("ep", tmp_path, tmp_path / "log", parse_config(text), text, registration, False)
    assert settings.prefetch == prefetch


@pytest.mark.parametrize("value, size", [
    (None, 256 * 2**20), ("512 MiB", 512 * 2**20), ("2GB", 2 * 10**9), ("1.5 GiB", 3 * 2**29), (2**20, 2**20),
])
def test_task_bytes_in_flight_takes_bytes_or_a_size_with_its_unit(value, size):
    text = "engine: {type: ThreadPoolEngine}" + ("" if value is None else f"\nmax_task_bytes_in_flight: {value}")
    assert parse_config(text).max_task_bytes_in_flight == size


OFFICIAL_STYLE = """\
display_name: Debug queue
debug: true
heartbeat_period: 2.5
heartbeat_threshold: 240
idle_heartbeats_soft: 10
idle_heartbeats_hard: 5760
allowed_functions:
  - 4B116D3C-1703-4F8F-9F6F-39921E5864DF
  - 2c9b1e3a-5f0e-4a3e-9d1b-0c6a8e2f7d11
admins: [8d8c7a9e-0b7e-4a0e-9f5c-1a2b3c4d5e6f]
authentication_policy: 1f0e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b
subscription_id: 0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9
public: true
high_assurance: false
amqp_port: 443
environment: production
local_compute_services: false
endpoint_setup: module load python
endpoint_teardown: echo bye
engine:
  type: ProcessPoolEngine
  max_workers: 2
  mp_context: forkserver
  max_tasks_per_child: 10
"""


def test_every_official_single_user_key_loads_with_its_official_meaning():
    config = parse_config(OFFICIAL_STYLE)
    assert config.debug is True and config.public is True and config.heartbeat_threshold == 240
    assert (config.idle_heartbeats_soft, config.idle_heartbeats_hard) == (10, 5760)
    # below the official's minimum of 5 s: raised, as the official raises it
    assert config.heartbeat_period == 2.5 and config.effective_heartbeat_period == 5
    assert config.allowed_functions == ["4b116d3c-1703-4f8f-9f6f-39921e5864df",
                                        "2c9b1e3a-5f0e-4a3e-9d1b-0c6a8e2f7d11"]  # canonical
    assert config.registration_fields() == {
        "public": True, "high_assurance": False, "allowed_functions": config.allowed_functions,
        "admins": ["8d8c7a9e-0b7e-4a0e-9f5c-1a2b3c4d5e6f"],
        "authentication_policy": "1f0e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
        "subscription_uuid": "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"}
    assert config.engine.executor_options == {"mp_context": "forkserver", "max_tasks_per_child": 10}


def test_thread_pool_options_pass_through_and_are_checked_against_the_executor():
    config = parse_config("engine: {type: ThreadPoolEngine, thread_name_prefix: mine}")
    assert config.engine.executor_options == {"thread_name_prefix": "mine"}


@pytest.mark.parametrize(("text", "phrase"), [
    ("allowed_functions: [not-a-uuid]", "allowed_functions.0 (line 1): expected a UUID"),
    ("allowed_functions: 4b116d3c-1703-4f8f-9f6f-39921e5864df", "allowed_functions (line 1): expected a list"),
    ("idle_heartbeats_soft: -1", "idle_heartbeats_soft (line 1): expected an integer >= 0"),
    ("heartbeat_threshold: 1.5", "heartbeat_threshold (line 1): expected an integer"),
    ("publik: true", "publik (line 1): unknown key (did you mean 'public'?)"),
])
def test_official_keys_with_wrong_values_name_the_key_and_line(text, phrase):
    with pytest.raises(ConfigError) as caught:
        parse_config(text + "\nengine: {type: ThreadPoolEngine}")
    assert phrase in str(caught.value)


@pytest.mark.parametrize(("engine", "phrase"), [
    ("{type: ThreadPoolEngine, thread_name_prefx: a}", "no option 'thread_name_prefx' (did you mean "
                                                       "'thread_name_prefix'?)"),
    ("{type: ThreadPoolEngine, initializer: x}", "ThreadPoolEngine has no option 'initializer'"),
    ("{type: ProcessPoolEngine, mp_context: spwn}", "mp_context must name a start method: spawn, forkserver, fork"),
    ("{type: ProcessPoolEngine, max_tasks_per_child: two}", "max_tasks_per_child: expected a positive integer"),
    ("{type: ProcessPoolEngine, mp_context: fork, max_tasks_per_child: 2}", "needs mp_context spawn or forkserver"),
])
def test_pool_options_are_checked(engine, phrase):
    with pytest.raises(ConfigError) as caught:
        parse_config(f"engine: {engine}")
    assert phrase in str(caught.value)


def test_mpi_engine_options_reach_parsls_mpi_executor():
    from compute_endpoint.endpoint.tree import engine_options

    config = parse_config(textwrap.dedent("""\
        engine:
          type: GlobusMPIEngine
          mpi_launcher: srun
          max_workers_per_block: 2
          poll_period: 5
          provider: {type: SlurmProvider, nodes_per_block: 4, launcher: {type: SimpleLauncher}}
        """))
    options = engine_options(config.engine)
    assert (options["type"], options["mpi_launcher"], options["max_workers_per_block"], options["poll_period"]) == \
        ("GlobusMPIEngine", "srun", 2, 5)
    assert options["provider"] == {"type": "SlurmProvider", "nodes_per_block": 4,
                                   "launcher": {"type": "SimpleLauncher"}}


def test_the_official_keys_of_4_19_that_ours_once_refused_load_with_their_meaning():
    config = parse_config(textwrap.dedent("""\
        amqp_port: 8443
        engine:
          type: GlobusComputeEngine
          strategy:
            type: SimpleStrategy
            max_idletime: 90
          allowed_serializers:
            - globus_compute_sdk.serialize.JSONData
            - globus_compute_sdk.serialize.PureSourceTextInspect
        paths:
          endpoint_dir: ~/uep
          endpoint_log: $HOME/uep.log
    """))
    assert config.amqp_port == 8443  # sites put brokers behind ports of their own
    assert config.engine.strategy == "simple" and config.engine.job_status_kwargs.max_idletime == 90
    assert config.engine.allowed_serializers == ["globus_compute_sdk.serialize.JSONData",
                                                 "globus_compute_sdk.serialize.PureSourceTextInspect"]
    assert (config.paths.endpoint_dir, config.paths.endpoint_log) == ("~/uep", "$HOME/uep.log")
    both = parse_config("engine: {type: GlobusComputeEngine, strategy: {type: SimpleStrategy, max_idletime: 90},\n"
                        "  job_status_kwargs: {max_idletime: 30}}")
    assert both.engine.job_status_kwargs.max_idletime == 30  # the explicit one wins
    for kind in ("ThreadPoolEngine", "ProcessPoolEngine"):
        pool = parse_config(f"engine: {{type: {kind}, label: mine, allowed_serializers: "
                            "[globus_compute_sdk.*Code, globus_compute_sdk.*Data]}").engine
        assert pool.label == "mine" and pool.allowed_serializers == ["globus_compute_sdk.*Code",
                                                                     "globus_compute_sdk.*Data"]


def test_a_managers_config_takes_the_officials_email():
    from compute_endpoint.endpoint.config import parse_manager_config

    assert parse_manager_config("email: admin@example.org\n").email == "admin@example.org"
