"""Habits of official endpoint users at the command line: the logging flags on every command,
-c, endpoint UUIDs in place of names, start --detach, whoami --linked-identities."""

from __future__ import annotations

import uuid

import click
import pytest

from compute_endpoint.endpoint.cli import app
from compute_endpoint.endpoint.directory import EndpointDirectory
from compute_endpoint.endpoint.exit_codes import Exit

FLAGS = ("--debug", "--log-to-console", "--no-color")


# python-exec passes every argument on to the module it runs, as the official's does.
@pytest.mark.parametrize("command", sorted(set(app.list_commands(click.Context(app))) - {"python-exec"}))
def test_every_command_takes_the_logging_flags_after_its_name(cli, command):
    for flag in FLAGS:
        result = cli(command, flag, "--help")
        assert result.exit_code == 0, f"{command} {flag}: {result.output}"
        assert flag in result.output  # and says so in its help


def test_the_flags_work_before_the_command_too_and_c_names_the_config_dir(cli_process, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    made = cli_process("--debug", "--no-color", "-c", str(elsewhere), "configure", "ep", "--log-to-console")
    assert made.returncode == 0, made.stderr
    assert (elsewhere / "ep" / "config.yaml").exists()
    listed = cli_process("-c", str(elsewhere), "list", "--debug")
    assert listed.returncode == 0 and "| ep" in listed.stdout


def test_start_my_ep_debug_is_understood(cli_process):
    """The official habit: the flag after the endpoint's name. It must reach start (which then
    fails for a reason of its own, not "No such option")."""
    cli_process("configure", "my_ep")
    result = cli_process("start", "my_ep", "--debug", "--detach")
    assert "No such option" not in result.stderr
    assert result.returncode != 2, result.stderr


def test_foreground_and_detach_contradict(cli_process):
    cli_process("configure", "ep")
    result = cli_process("start", "ep", "--foreground", "--detach")
    assert result.returncode == 2 and "contradict" in result.stderr


def test_commands_take_the_endpoint_uuid_in_place_of_its_name(cli_process, user_dir):
    cli_process("configure", "named")
    endpoint_id = uuid.uuid4()
    EndpointDirectory(user_dir, "named").write_endpoint_id(endpoint_id)
    stopped = cli_process("stop", str(endpoint_id))
    assert stopped.returncode == 0 and "Endpoint <named> is not running" in stopped.stdout
    unknown = uuid.uuid4()
    for command in ("start", "stop", "restart"):
        result = cli_process(command, str(unknown))
        assert result.returncode == 1, (command, result.stderr)
        assert f"No endpoint on this machine has the ID {unknown}" in result.stderr


def test_endpoint_uuid_must_be_a_uuid(cli_process):
    cli_process("configure", "ep")
    result = cli_process("start", "ep", "--endpoint-uuid", "not-a-uuid")
    assert result.returncode == 2 and "'not-a-uuid' is not a UUID" in result.stderr


def test_delete_of_a_never_registered_endpoint_needs_no_service(cli_process, user_dir):
    cli_process("configure", "ep")
    result = cli_process("delete", "ep", "--yes")
    assert result.returncode == 0, result.stderr
    assert "never registered: nothing to delete at the Compute service" in result.stdout
    assert not (user_dir / "ep").exists()


def test_a_fresh_install_start_without_a_terminal_shows_the_login_link_then_says_how_to_finish(cli_process):
    """The official start begins Globus Auth's native login at once; with no terminal to read
    the code from, ours shows the same prompt and link, then how to finish, and stops (77)."""
    cli_process("configure", "first")
    result = cli_process("start", "first", timeout=60)  # it does not wait for a code no one can type
    assert result.returncode == Exit.NO_PERMISSION, result.stdout + result.stderr
    assert "Please authenticate with Globus here:" in result.stdout
    link = next(line for line in result.stdout.splitlines() if line.startswith("https://"))
    assert "auth.globus.org" in link and "client_id=" in link and "code_challenge=" in link
    assert "No credentials for the Compute service at https://compute.api.globus.org" in result.stderr
    assert "No terminal to read the authorization code from here" in result.stderr
    assert "globus-compute-endpoint login" in result.stderr


def test_configure_takes_the_officials_options(cli_process, user_dir, tmp_path):
    policy, subscription = uuid.uuid4(), uuid.uuid4()
    made = cli_process("configure", "ep", "--auth-policy", str(policy), "--subscription-id", str(subscription),
                       "--high-assurance")
    assert made.returncode == 0, made.stderr
    text = (user_dir / "ep" / "config.yaml").read_text()
    assert f"authentication_policy: {policy}" in text and f"subscription_id: {subscription}" in text
    assert "high_assurance: true" in text
    mine = tmp_path / "mine.yaml"
    mine.write_text("engine: {type: ThreadPoolEngine, max_workers: 3}\n")
    copied = cli_process("configure", "copy", "--endpoint-config", str(mine))
    assert copied.returncode == 0 and (user_dir / "copy" / "config.yaml").read_text() == mine.read_text()
    mine.write_text("engine: {type: ThreadPoolEngin}\n")
    refused = cli_process("configure", "bad", "--manager-config", str(mine))
    assert refused.returncode == 1 and "did you mean 'ThreadPoolEngine'" in refused.stderr
    assert not (user_dir / "bad").exists()
    assert cli_process("configure", "x", "--auth-policy", "nope").returncode == 2


def test_the_rest_of_the_official_4_19_flags(cli_process, user_dir, tmp_path):
    mine = tmp_path / "core.yaml"
    mine.write_text("engine: {type: ThreadPoolEngine, max_workers: 3}\n")
    core = cli_process("configure", "core", "--core-config", str(mine))
    assert core.returncode == 0 and (user_dir / "core" / "config.yaml").read_text() == mine.read_text()
    other = tmp_path / "other.yaml"
    other.write_text("engine: {type: ThreadPoolEngine, max_workers: 1}\n")
    both = cli_process("configure", "both", "--core-config", str(mine), "--manager-config", str(other))
    assert both.returncode == 0 and "--manager-config is deprecated and ignored" in both.stderr
    assert (user_dir / "both" / "config.yaml").read_text() == mine.read_text()
    # High assurance without its policy and subscription is refused, as the official refuses it.
    for missing in ((), ("--subscription-id", str(uuid.uuid4())), ("--auth-policy", str(uuid.uuid4()))):
        refused = cli_process("configure", "ha", "--high-assurance", *missing)
        assert refused.returncode == 1 and "require both a HA policy and a HA subscription id" in refused.stderr
    assert not (user_dir / "ha").exists()
    # -c names a folder that is not there yet: made (0700), as the official makes it.
    fresh = tmp_path / "not" / "yet"
    listed = cli_process("-c", str(fresh), "list")
    assert listed.returncode == 0 and "No endpoints configured!" in listed.stdout
    assert fresh.is_dir() and fresh.stat().st_mode & 0o777 == 0o700
    (tmp_path / "a-file").write_text("")
    on_a_file = cli_process("-c", str(tmp_path / "a-file"), "list")
    assert on_a_file.returncode == 2 and "is a file" in on_a_file.stderr


def test_render_user_config_takes_the_reserved_variables(cli_process, tmp_path):
    import json

    template = tmp_path / "t.yaml.j2"
    template.write_text("engine: {type: ThreadPoolEngine}\n"
                        "display_name: {{ _GC.parent_config.display_name }}-{{ _GC.mapped_identity.local.uname }}-"
                        "{{ _GC.mapped_identity.globus.id }}\n")
    parent, identity = tmp_path / "p.yaml", tmp_path / "m.json"
    parent.write_text("display_name: Site\n")
    identity.write_text(json.dumps({"local_user_record": ["alice", "x", 1001, 1001, "Alice", "/home/alice", "/bin/sh"],
                                    "matched_identity": "0b1f0000-0000-4000-8000-000000000001"}))
    rendered = cli_process("render-user-config", "-t", str(template), "--parent-config", str(parent),
                           "--mapped-identity", str(identity))
    assert rendered.returncode == 0, rendered.stderr
    assert rendered.stdout.strip().endswith("display_name: Site-alice-0b1f0000-0000-4000-8000-000000000001")
    parent.write_text("engine: {type: ThreadPoolEngine}\n")
    classic = cli_process("render-user-config", "-t", str(template), "--parent-config", str(parent))
    assert classic.returncode == 1 and "the parent config has an engine" in classic.stderr
    identity.write_text("[1, 2]")
    bad = cli_process("render-user-config", "-t", str(template), "--mapped-identity", str(identity))
    assert bad.returncode == 1 and "--mapped-identity must be a JSON object" in bad.stderr


def test_gce_version_and_python_exec_as_the_officials(cli_process, tmp_path):
    import json
    import subprocess

    from tests.conftest import BIN_DIR

    version = subprocess.run([str(BIN_DIR / "gce"), "version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("Globus Compute endpoint version: 4.19.0 (compute-endpoint ")
    data = tmp_path / "d.json"
    data.write_text('{"b": 1, "a": [2]}')
    # The rest of the arguments, --debug included, are the module's.
    ran = cli_process("python-exec", "json.tool", "--sort-keys", "--compact", str(data))
    assert ran.returncode == 0 and ran.stdout.strip() == '{"a":[2],"b":1}', ran.stderr
    passed_on = cli_process("python-exec", "json.tool", "--debug")
    assert passed_on.returncode == 2 and "unrecognized arguments: --debug" in passed_on.stderr
    assert json.loads(ran.stdout) == {"a": [2], "b": 1}
