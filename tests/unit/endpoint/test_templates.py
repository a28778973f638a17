"""User endpoint templates: rendering in the sandbox, options checked against the schema,
no option able to add keys, the official 4.x files, migration of a classic endpoint."""

from __future__ import annotations

import json

import pytest
import yaml

from compute_endpoint.endpoint.config import ConfigError, parse_config, parse_manager_config
from compute_endpoint.endpoint.templates import (
    DEFAULT_SCHEMA,
    DEFAULT_TEMPLATE,
    TemplateError,
    default_files,
    is_template_capable,
    migrate,
    render,
    render_directory,
    user_environment,
)

# The template the official 4.19 `configure` writes (its default, shortened to what renders).
OFFICIAL_TEMPLATE = """\
endpoint_setup: {{ endpoint_setup|default() }}

engine:
  type: GlobusComputeEngine
  max_workers_per_node: 1

  provider:
    type: LocalProvider

    min_blocks: 0
    max_blocks: 1
    init_blocks: 1

    worker_init: {{ worker_init|default() }}

idle_heartbeats_soft: 10
idle_heartbeats_hard: 5760
"""


def test_the_default_and_the_officials_template_render_to_configs_that_load():
    for template in (DEFAULT_TEMPLATE, OFFICIAL_TEMPLATE):
        config = parse_config(render(template, {}, schema=DEFAULT_SCHEMA))
        assert config.engine.type == "GlobusComputeEngine" and config.idle_heartbeats_soft == 10
    config = parse_config(render(DEFAULT_TEMPLATE, {"max_workers_per_node": 4}, schema=DEFAULT_SCHEMA))
    assert config.engine.max_workers_per_node == 4


def test_the_default_template_offers_no_key_that_runs_a_shell_command():
    """Finding: the default template filled endpoint_setup and worker_init from the submitter's
    options, so submitting an allowed function with {"endpoint_setup": "id > ..."} ran a shell
    command as the endpoint's owner."""
    for key in ("endpoint_setup", "worker_init"):
        with pytest.raises(TemplateError, match="Additional properties are not allowed"):
            render(DEFAULT_TEMPLATE, {key: "id > /tmp/owned"}, schema=DEFAULT_SCHEMA)
        config = parse_config(render(DEFAULT_TEMPLATE, {key: "id > /tmp/owned"}))  # even without the schema
        assert config.endpoint_setup is None and "worker_init" not in config.engine.provider.options


def test_options_are_checked_against_the_schema_and_the_error_names_the_option():
    with pytest.raises(TemplateError, match="user option max_workers_per_node: 'four' is not of type 'integer'"):
        render(DEFAULT_TEMPLATE, {"max_workers_per_node": "four"}, schema=DEFAULT_SCHEMA)
    with pytest.raises(TemplateError, match="user option max_workers_per_node: 0 is less than the minimum of 1"):
        render(DEFAULT_TEMPLATE, {"max_workers_per_node": 0}, schema=DEFAULT_SCHEMA)
    with pytest.raises(TemplateError, match="'_GC' is a name the template reserves"):
        render(DEFAULT_TEMPLATE, {"_GC": {}})
    with pytest.raises(TemplateError, match="not a valid JSON schema"):
        render(DEFAULT_TEMPLATE, {}, schema={"type": "no-such-type"})


def test_an_option_cannot_add_keys_of_its_own():
    attack = 'x"\nengine: {type: ThreadPoolEngine}\nfoo: "'
    text = render(OFFICIAL_TEMPLATE, {"worker_init": attack})
    config = parse_config(text)
    assert config.engine.type == "GlobusComputeEngine"
    assert config.engine.provider.options["worker_init"] == attack  # one string, as given


def test_a_missing_option_without_a_default_is_named():
    with pytest.raises(TemplateError, match="'account' is undefined"):
        render("engine: {type: ThreadPoolEngine}\naccount: {{ account }}\n", {})


def test_the_sandbox_keeps_templates_from_pythons_internals():
    with pytest.raises(TemplateError, match="sandbox forbids"):
        render("x: {{ ''.__class__.__mro__[1].__subclasses__() }}\n", {})


def test_shell_escape_and_user_runtime():
    template = "endpoint_setup: {{ setup|shell_escape }}\nengine: {type: ThreadPoolEngine}\n" \
               "display_name: {{ _GC.user_runtime.python_version }}\n"
    text = render(template, {"setup": "echo $(rm -rf /)"}, {"python_version": "3.11.7"})
    config = parse_config(text)
    assert config.endpoint_setup == "'echo $(rm -rf /)'" and config.display_name == "3.11.7"


def test_the_layout_and_its_manager_config(tmp_path):
    files = default_files("My EP")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert is_template_capable(tmp_path)
    assert parse_manager_config(files["config.yaml"]).display_name == "My EP"
    text, config = render_directory(tmp_path, {"max_workers_per_node": 2})
    assert config.engine.type == "GlobusComputeEngine" and config.engine.max_workers_per_node == 2
    with pytest.raises(ConfigError, match="unknown key"):
        parse_manager_config("engine: {type: ThreadPoolEngine}\n")
    (tmp_path / "user_environment.yaml").write_text("SITE: /scratch\nN: 4\n")
    assert user_environment(tmp_path) == {"SITE": "/scratch", "N": "4"}
    (tmp_path / "user_environment.yaml").write_text("HOME: /elsewhere\n")
    with pytest.raises(TemplateError, match="sets HOME"):
        user_environment(tmp_path)
    (tmp_path / "config.yaml").write_text("engine: {type: ThreadPoolEngine}\n")
    assert not is_template_capable(tmp_path)  # an engine in config.yaml: a classic endpoint


def test_migrating_moves_the_engine_into_the_template_and_keeps_a_backup(tmp_path):
    classic = ("display_name: Lab\nallowed_functions: [4b116d3c-1703-4f8f-9f6f-39921e5864df]\namqp_port: 5671\n"
               "engine:\n  type: ThreadPoolEngine\n  max_workers: 3\nidle_heartbeats_soft: 4\n")
    (tmp_path / "config.yaml").write_text(classic)
    backup = migrate(tmp_path)
    assert backup.read_text() == classic and is_template_capable(tmp_path)
    manager = parse_manager_config((tmp_path / "config.yaml").read_text())
    assert manager.display_name == "Lab" and manager.amqp_port == 5671 and manager.allowed_functions
    _, config = render_directory(tmp_path, {})
    assert config.engine.max_workers == 3 and config.idle_heartbeats_soft == 4 and config.amqp_port == 5671
    assert json.loads((tmp_path / "user_config_schema.json").read_text()) == DEFAULT_SCHEMA
    with pytest.raises(TemplateError, match="template-capable already"):
        migrate(tmp_path)
    assert "display_name" not in yaml.safe_load((tmp_path / "user_config_template.yaml.j2").read_text())


def test_the_reserved_variables_render_under_gc_and_by_their_deprecated_bare_names(caplog):
    import logging
    import os

    from compute_endpoint.endpoint.templates import Reserved, mapped_identity

    identity = mapped_identity(os.geteuid(), "0b1f0000-0000-4000-8000-000000000001")
    reserved = Reserved({"display_name": "Site EP", "amqp_port": 443}, identity, {"SCRATCH": "/scratch/x"})
    template = ("display_name: {{ _GC.parent_config.display_name }}-{{ _GC.mapped_identity.local.uname }}\n"
                "engine: {type: ThreadPoolEngine}\n"
                "endpoint_setup: echo {{ _GC.env.SCRATCH }} {{ _GC.mapped_identity.globus.id }}\n")
    with caplog.at_level(logging.WARNING):
        config = parse_config(render(template, {}, None, None, None, reserved))
    assert config.display_name == f"Site EP-{identity['local']['uname']}"
    assert config.endpoint_setup == "echo /scratch/x 0b1f0000-0000-4000-8000-000000000001"
    assert "deprecated" not in caplog.text
    assert identity["local"]["uid"] == os.geteuid() and identity["local"]["groups"]

    bare = "display_name: {{ parent_config.display_name }}-{{ mapped_identity.local.uid }}\n" \
           "engine: {type: ThreadPoolEngine}\n"
    with caplog.at_level(logging.WARNING):
        assert parse_config(render(bare, {}, None, None, None, reserved)).display_name == \
            f"Site EP-{os.geteuid()}"
    assert "Template access to `parent_config` is deprecated; access via `_GC` instead (i.e., _GC.parent_config)" \
        in caplog.text and "`mapped_identity` is deprecated" in caplog.text


def test_template_and_schema_paths_from_the_config_and_the_yaml_fallback(tmp_path):
    from compute_endpoint.endpoint.templates import schema_file, template_file

    assert template_file(tmp_path) == tmp_path / "user_config_template.yaml.j2"
    (tmp_path / "user_config_template.yaml").write_text("engine: {type: ThreadPoolEngine}\n")
    assert template_file(tmp_path) == tmp_path / "user_config_template.yaml"  # no .j2: the official's fallback
    elsewhere = tmp_path / "site" / "templates"
    elsewhere.mkdir(parents=True)
    (elsewhere / "t.yaml.j2").write_text("engine: {type: ThreadPoolEngine, max_workers: {{ n }}}\n")
    (elsewhere / "s.json").write_text(json.dumps({"type": "object", "properties": {"n": {"type": "integer"}}}))
    template = template_file(tmp_path, "site/templates/t.yaml.j2")
    schema = schema_file(tmp_path, str(elsewhere / "s.json"))
    _, config = render_directory(tmp_path, {"n": 3}, template=template, schema=schema)
    assert config.engine.max_workers == 3
    with pytest.raises(TemplateError, match="user option n"):
        render_directory(tmp_path, {"n": "three"}, template=template, schema=schema)


def test_a_config_without_an_engine_missing_or_empty_is_a_managers_with_defaults(tmp_path):
    assert is_template_capable(tmp_path)  # no config.yaml at all
    (tmp_path / "config.yaml").write_text("")
    assert is_template_capable(tmp_path)
    assert parse_manager_config("").display_name is None
    assert parse_manager_config("# only a comment\n").max_user_endpoints == 16
    (tmp_path / "config.yaml").write_text("display_name: x\n")
    assert is_template_capable(tmp_path)


def test_a_user_endpoints_environment_and_paths(tmp_path, monkeypatch):
    from compute_endpoint.endpoint.user_launch import user_endpoint_environment, user_endpoint_paths
    from compute_endpoint.protocol import commands

    command = commands.StartUserEndpoint("uep.a.b", "0b1f0000-0000-4000-8000-000000000002", {}, {},
                                         {"python": {"version": "3.12.1"}, "globus_compute_sdk_version": "4.19.0"},
                                         frozenset())
    environment = user_endpoint_environment(command, {"GC_USER_SDK_VERSION": "site's own", "SITE": "/s"})
    assert environment == {"GLOBUS_COMPUTE_ENDPOINT_NAME": "uep.a.b", "GC_USER_PYTHON_VERSION": "3.12.1",
                           "GC_USER_SDK_VERSION": "site's own", "SITE": "/s"}
    default = tmp_path / "user_endpoints" / "uep.a.b"
    plain = parse_config("engine: {type: ThreadPoolEngine}\n")
    monkeypatch.delenv("GLOBUS_COMPUTE_ENDPOINT_DIR", raising=False)
    monkeypatch.delenv("GLOBUS_COMPUTE_LOG_PATH", raising=False)
    assert user_endpoint_paths(default, plain, dict(environment)) == (default, default / "endpoint.log")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    chosen = parse_config("engine: {type: ThreadPoolEngine}\npaths: {endpoint_dir: '~/ueps/x', "
                          "endpoint_log: '${SITE}/logs/x.log'}\n")
    env = {"SITE": str(tmp_path / "site")}
    assert user_endpoint_paths(default, chosen, env) == (tmp_path / "home/ueps/x", tmp_path / "site/logs/x.log")
    assert env["GLOBUS_COMPUTE_ENDPOINT_DIR"] == str(tmp_path / "home/ueps/x") and (tmp_path / "site/logs").is_dir()
    from_env = {"GLOBUS_COMPUTE_ENDPOINT_DIR": str(tmp_path / "by-env")}
    assert user_endpoint_paths(default, plain, from_env)[0] == tmp_path / "by-env"
