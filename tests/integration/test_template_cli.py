"""The template-capable layout at the command line: configure it, migrate to it, render it."""

from __future__ import annotations

import json

import yaml

from compute_endpoint.endpoint.templates import is_template_capable


def test_configure_template_capable_writes_the_four_files(cli_process, user_dir):
    made = cli_process("configure", "tc", "--template-capable", "--display-name", "Templated")
    assert made.returncode == 0, made.stderr
    directory = user_dir / "tc"
    assert is_template_capable(directory)
    assert yaml.safe_load((directory / "config.yaml").read_text()) == {"display_name": "Templated"}
    assert json.loads((directory / "user_config_schema.json").read_text())["type"] == "object"
    for name in ("config.yaml", "user_config_template.yaml.j2", "user_config_schema.json", "user_environment.yaml"):
        assert (directory / name).stat().st_mode & 0o777 == 0o600, name
    rendered = cli_process("render-user-config", "--endpoint", "tc")
    assert rendered.returncode == 0, rendered.stderr
    assert "type: GlobusComputeEngine" in rendered.stdout


def test_configure_takes_the_officials_template_options(cli_process, user_dir, tmp_path):
    template = tmp_path / "mine.yaml.j2"
    template.write_text("engine:\n  type: ThreadPoolEngine\n  max_workers: {{ workers|default(2) }}\n")
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"workers": {"type": "integer"}}}))
    made = cli_process("configure", "mine", "--template-config", str(template), "--schema-config", str(schema))
    assert made.returncode == 0, made.stderr
    assert (user_dir / "mine" / "user_config_template.yaml.j2").read_text() == template.read_text()
    options = tmp_path / "options.json"
    options.write_text('{"workers": 7}')
    rendered = cli_process("render-user-config", "-e", "mine", "-o", str(options))
    assert rendered.returncode == 0 and "max_workers: 7" in rendered.stdout
    options.write_text('{"workers": "seven"}')
    refused = cli_process("render-user-config", "-e", "mine", "-o", str(options))
    assert refused.returncode == 1 and "user option workers: 'seven' is not of type 'integer'" in refused.stderr


def test_render_user_config_from_files_and_stdin(cli_process, tmp_path):
    template = tmp_path / "t.yaml.j2"
    template.write_text("engine:\n  type: ThreadPoolEngine\ndisplay_name: {{ name }}\n")
    rendered = cli_process("render-user-config", "--template", str(template), "--user-options", "-",
                           input='{"name": "from stdin"}')
    assert rendered.returncode == 0, rendered.stderr
    assert 'display_name: "from stdin"' in rendered.stdout
    missing = cli_process("render-user-config", "--template", str(template))
    assert missing.returncode == 1 and "'name' is undefined" in missing.stderr
    template.write_text("engine:\n  type: ThreadPoolEngin\n")
    bad = cli_process("render-user-config", "--template", str(template))
    assert bad.returncode == 1 and "did you mean 'ThreadPoolEngine'" in bad.stderr
    assert cli_process("render-user-config").returncode == 2


def test_migrate_to_template_capable(cli_process, user_dir):
    cli_process("configure", "classic")
    (user_dir / "classic" / "config.yaml").write_text("display_name: Old\namqp_port: 5671\n"
                                                       "engine:\n  type: ThreadPoolEngine\n  max_workers: 3\n")
    declined = cli_process("migrate-to-template-capable", "classic", input="n\n")
    assert declined.returncode == 1 and not is_template_capable(user_dir / "classic")
    migrated = cli_process("migrate-to-template-capable", "classic", "--yes")
    assert migrated.returncode == 0, migrated.stderr
    assert is_template_capable(user_dir / "classic")
    assert (user_dir / "classic" / "config.yaml.backup").exists()
    rendered = cli_process("render-user-config", "-e", "classic")
    assert "max_workers: 3" in rendered.stdout
    again = cli_process("migrate-to-template-capable", "classic", "--yes")
    assert again.returncode == 1 and "template-capable already" in again.stderr
