"""The official 4.19 multi-user endpoint, run as root against our compute-service with the
same identity mapping as ours: alice's and bob's tasks run as their local users there too.
The official runs from its own venv on the system Python, which the users can read."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import BIN_DIR
from tests.local_users import mapping
from tests.official_manager import official_user_venv
from tests.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("multi_user"), pytest.mark.timeout(900),  # its venv, made once
              pytest.mark.skipif(os.geteuid() != 0, reason="a multi-user endpoint runs as root (CI runs as root)")]

TEMPLATE = """\
engine:
  type: ThreadPoolEngine
  max_workers: 1
local_compute_services: true
amqp_port: 5672
"""


def whoami():
    import os

    return os.getuid()


def test_the_official_multi_user_endpoint_maps_the_same_identities_to_the_same_users(sdk_port, start_service,
                                                                                      tmp_path, local_users):
    from tests.integration.test_multi_user import Identity

    venv = official_user_venv()
    service = start_service(port=sdk_port)  # where the official's local_compute_services looks
    credentials = subprocess.run([str(BIN_DIR / "compute-service"), "client", "create", "--identity", "siteadmin",
                                  "--data-dir", str(service.data_dir),
                                  *(["--db", service.db_url] if service.db_url else [])],
                                 check=True, capture_output=True, text=True).stdout
    base = tmp_path / "official"
    env = {"HOME": str(tmp_path), "PATH": f"{venv}/bin:/usr/bin:/bin", "GLOBUS_COMPUTE_USER_DIR": str(base),
           "GLOBUS_SDK_SERVICE_URL_AUTH": f"{service.url}/",
           **dict(line.split("=", 1) for line in credentials.splitlines() if line.startswith("GLOBUS_"))}
    gce = str(venv / "bin" / "globus-compute-endpoint")
    made = subprocess.run([gce, "configure", "--multi-user", "true", "--contact-email", "admin@example.edu", "mu"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stdout + made.stderr
    directory = base / "mu"
    config = (directory / "config.yaml").read_text()
    mapping_path = config.split("identity_mapping_config_path:", 1)[1].split()[0].strip("'\"")
    Path(mapping_path).write_text(mapping({"alice": local_users[0].pw_name, "bob": local_users[1].pw_name}))
    (directory / "config.yaml").write_text(config + "local_compute_services: true\namqp_port: 5672\n")
    (directory / "user_config_template.yaml.j2").write_text(TEMPLATE)
    (directory / "user_environment.yaml").write_text(f"PATH: {venv}/bin:/usr/bin:/bin\n")
    output = tmp_path / "official-output.txt"
    with output.open("w") as out:
        process = subprocess.Popen([gce, "start", "mu"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # it signals its whole process group as it stops
    log = directory / "endpoint.log"
    try:
        wait_for(lambda: process.poll() is not None or (log.exists() and "Awaiting messages" in log.read_text()),
                 90, "the official multi-user endpoint's start")
        assert process.poll() is None, output.read_text()[-3000:] + (log.read_text()[-3000:] if log.exists() else "")
        endpoint_id = json.loads((directory / "endpoint.json").read_text())["endpoint_id"]
        for name, user in (("alice", local_users[0]), ("bob", local_users[1])):
            identity = Identity(service, name, endpoint_id)
            assert identity.values(whoami, [()], timeout=180) == [user.pw_uid], log.read_text()[-3000:]
        # An identity it cannot map: its failure notice fails the waiting task at the SDK, as ours does.
        carol = Identity(service, "carol", endpoint_id)
        assert "Identity failed to map to a local user name" in carol.failure(whoami, ())
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        subprocess.run(["pkill", "-KILL", "-f", str(base)], capture_output=True)
        time.sleep(0.5)
