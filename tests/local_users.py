"""Real local accounts for the multi-user tests (as root), and identity mappings to them."""

from __future__ import annotations

import json
import pwd
import subprocess
import uuid
from pathlib import Path

import psutil
import pytest


@pytest.fixture(scope="module")
def local_users():
    """Two real accounts with homes, removed at the end."""
    suffix = uuid.uuid4().hex[:6]
    names = [f"gcmu{suffix}a", f"gcmu{suffix}b"]
    for name in names:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
    yield [pwd.getpwnam(name) for name in names]
    for name in names:  # what the user endpoints logged, for a failure's report (-s shows it)
        for log_file in Path(pwd.getpwnam(name).pw_dir).glob(".globus_compute/*/endpoint.log"):
            print(f"----- {log_file}\n{log_file.read_text(errors='replace')[-3000:]}")
    for name in names:
        for process in psutil.process_iter(["username"]):
            if process.info["username"] == name:
                process.kill()
        subprocess.run(["userdel", "--remove", "--force", name], capture_output=True)


def mapping(rules: dict[str, str]) -> str:
    return json.dumps([{"DATA_TYPE": "expression_identity_mapping#1.0.0",
                        "mappings": [{"source": "{username}", "match": identity, "output": local}
                                     for identity, local in rules.items()]}], indent=2)
