"""Templates rendered by ours and by the official 4.19's own `render-user-config`, for the same
inputs, print the same config: the official's default template with a user's runtime and
requirements, the reserved variables under _GC and by their deprecated bare names, the
quoting of string options and |shell_escape."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import BIN_DIR
from tests.official_manager import USER, official_user_venv

pytestmark = pytest.mark.slow

RESERVED = """\
engine:
  type: ThreadPoolEngine
  max_workers: {{ n|default(1) }}
display_name: {{ _GC.mapped_identity.local.uname }}-{{ _GC.parent_config.display_name }}
endpoint_setup: {{ cmd|shell_escape }}
endpoint_teardown: echo {{ _GC.user_runtime.python.version }} {{ _GC.env.SITE_MARK }}
  {{ _GC.mapped_identity.local.uid }}
"""
DEPRECATED = """\
engine: {type: ThreadPoolEngine}
display_name: {{ parent_config.display_name }}-{{ mapped_identity.local.dir }}-{{ user_runtime.python.version }}
"""
QUOTING = """\
engine:
  type: ThreadPoolEngine
display_name: {{ name }}
endpoint_setup: {{ setup }}
endpoint_teardown: {{ workers }} {{ flag }}
"""
RUNTIME = {"python": {"version": "3.12.1", "version_tuple": [3, 12, 1]}, "globus_compute_sdk_version": "4.19.0"}


def official_template(name: str) -> str:
    return (official_user_venv() / "lib" / f"python3.{_minor(official_user_venv())}" / "site-packages" /
            "globus_compute_endpoint" / "endpoint" / "config" / name).read_text()


def _minor(venv: Path) -> str:
    return next(p.name for p in (venv / "lib").iterdir() if p.name.startswith("python3.")).removeprefix("python3.")


def render_both(template: str, options: dict, schema: dict | None = None, parent: str = "display_name: Parent\n",
                runtime: dict | None = None) -> tuple[str, str]:
    venv = official_user_venv()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        files = {"t.yaml.j2": template, "o.json": json.dumps(options), "p.yaml": parent,
                 "r.json": json.dumps(runtime or RUNTIME)}
        if schema is not None:
            files["s.json"] = json.dumps(schema)
        for name, text in files.items():
            (folder / name).write_text(text)
        arguments = ["render-user-config", "-t", "t.yaml.j2", "-o", "o.json", "--parent-config", "p.yaml",
                     "--user-runtime", "r.json", *(["-s", "s.json"] if schema is not None else [])]
        shutil.chown(folder, USER)
        folder.chmod(0o755)
        for path in folder.iterdir():
            path.chmod(0o644)
        record = pwd.getpwnam(USER)
        environment = {"HOME": record.pw_dir, "PATH": f"{venv}/bin:/usr/bin:/bin", "SITE_MARK": "marked"}
        command = [shutil.which("runuser") or "runuser", "-u", USER, "--", f"{venv}/bin/globus-compute-endpoint"]
        official = subprocess.run([*command, *arguments], cwd=folder, env=environment, capture_output=True,
                                  text=True, timeout=120)
        assert official.returncode == 0, official.stdout + official.stderr
        # Ours runs as root here: the same account is given as the mapped identity.
        (folder / "m.json").write_text(json.dumps({"local_user_record": [
            record.pw_name, "x", record.pw_uid, record.pw_gid, record.pw_gecos, record.pw_dir, record.pw_shell]}))
        ours = subprocess.run([str(BIN_DIR / "globus-compute-endpoint"), *arguments, "--mapped-identity", "m.json"],
                              cwd=folder, env={**os.environ, "SITE_MARK": "marked"}, capture_output=True, text=True,
                              timeout=120)
        assert ours.returncode == 0, ours.stdout + ours.stderr
    return official.stdout.strip(), ours.stdout.strip()


def test_the_officials_default_template_renders_the_same():
    template, schema = official_template("user_config_template.yaml.j2"), json.loads(
        official_template("user_config_schema.json"))
    for options in ({}, {"worker_init": "module load python", "endpoint_setup": "echo ready"},
                    {"requirements": "numpy==2.1.0"}):
        official, ours = render_both(template, options, schema)
        assert ours == official, f"options {options}:\n--- official\n{official}\n--- ours\n{ours}"


@pytest.mark.parametrize("template, options", [
    (RESERVED, {"n": 3, "cmd": "echo $(id) 'quoted'"}),
    (DEPRECATED, {}),
    (QUOTING, {"name": "x\ny: injected", "setup": "rm -rf / # 'a' \"b\"", "workers": 4, "flag": True}),
])
def test_reserved_variables_and_quoting_render_the_same(template, options):
    official, ours = render_both(template, options)
    assert ours == official, f"--- official\n{official}\n--- ours\n{ours}"
