"""login, logout, whoami, client identities and the identity lock: against a real local
compute-service, and against a fake Globus Auth for the hosted service's flows."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest
import requests

from compute_endpoint.endpoint.exit_codes import Exit
from tests.conftest import BIN_DIR
from tests.endpoint_harness import THREAD_POOL_CONFIG, EndpointHarness
from tests.fake_auth import FakeGlobusAuth

pytestmark = pytest.mark.slow
HOSTED = "https://compute.api.globus.org"


def endpoint_cli(env: dict, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN_DIR / "globus-compute-endpoint"), *args], env=env, text=True, input=input,
                          capture_output=True, timeout=120, stdin=None if input is not None else subprocess.DEVNULL)


@pytest.fixture
def local_env(start_service, tmp_path):
    service = start_service()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLOBUS_COMPUTE_CLIENT", "GLOBUS_SDK"))}
    env.update(GLOBUS_COMPUTE_USER_DIR=str(tmp_path / "gc"), GLOBUS_SDK_SERVICE_URL_COMPUTE=service.url)
    return service, env


# ---------------------------------------------------------------- local compute-service


def test_local_login_whoami_logout(local_env, tmp_path):
    service, env = local_env
    token = service.token("alice")
    result = endpoint_cli(env, "login", "--token", token)
    assert result.returncode == 0, result.stderr
    assert "as alice" in result.stdout
    storage = tmp_path / "gc" / "storage.db"
    assert stat.S_IMODE(storage.stat().st_mode) == 0o600
    assert token.encode() in storage.read_bytes()  # kept where the official SDK keeps tokens

    who = endpoint_cli(env, "whoami")
    assert who.returncode == 0 and "as user alice (id " in who.stdout
    again = endpoint_cli(env, "login", "--token", service.token("bob"))
    assert "Already logged in" in again.stdout and "--force" in again.stdout

    assert endpoint_cli(env, "logout").stdout.startswith("Logged out of")
    gone = endpoint_cli(env, "whoami")
    assert gone.returncode == Exit.NO_PERMISSION and "Log in first" in gone.stderr and "Traceback" not in gone.stderr
    assert "No stored credentials" in endpoint_cli(env, "logout").stdout


def test_local_login_refuses_a_token_the_service_does_not_know(local_env):
    _, env = local_env
    result = endpoint_cli(env, "login", "--token", "not-a-token")
    assert result.returncode == Exit.NO_PERMISSION
    assert "does not accept this token" in result.stderr and "Traceback" not in result.stderr
    assert endpoint_cli(env, "whoami").returncode == Exit.NO_PERMISSION  # nothing was kept


def test_login_asks_for_the_token_when_not_given(local_env):
    service, env = local_env
    token = service.token("carol")
    result = endpoint_cli(env, "login", input=token + "\n")  # no terminal: the piped token is read
    assert result.returncode == 0, result.stderr
    assert "as carol" in result.stdout
    assert token not in result.stdout + result.stderr


def test_client_identity_from_the_local_service(local_env):
    service, env = local_env
    created = subprocess.run([str(BIN_DIR / "compute-service"), "client", "create", "--identity", "robot",
                              "--data-dir", str(service.data_dir)], capture_output=True, text=True, check=True)
    variables = dict(line.split("=", 1) for line in created.stdout.split())
    assert set(variables) == {"GLOBUS_COMPUTE_CLIENT_ID", "GLOBUS_COMPUTE_CLIENT_SECRET"}
    client_env = {**env, **variables}
    who = endpoint_cli(client_env, "whoami")
    assert who.returncode == 0, who.stderr
    assert "as client identity robot" in who.stdout

    wrong = endpoint_cli({**client_env, "GLOBUS_COMPUTE_CLIENT_SECRET": "wrong"}, "whoami")
    assert wrong.returncode == Exit.NO_PERMISSION and "were refused" in wrong.stderr
    assert variables["GLOBUS_COMPUTE_CLIENT_SECRET"] not in wrong.stderr
    half = endpoint_cli({**env, "GLOBUS_COMPUTE_CLIENT_ID": variables["GLOBUS_COMPUTE_CLIENT_ID"]}, "whoami")
    assert half.returncode != 0 and "set both" in half.stderr


def test_an_endpoint_runs_as_a_client_identity(local_env, tmp_path):
    service, env = local_env
    created = subprocess.run([str(BIN_DIR / "compute-service"), "client", "create", "--identity", "robot",
                              "--data-dir", str(service.data_dir)], capture_output=True, text=True, check=True)
    harness = EndpointHarness(service, tmp_path / "robot-gc")
    harness.env.update(dict(line.split("=", 1) for line in created.stdout.split()))
    harness.cli("logout")  # no user token: only the client credentials
    harness.start()
    try:
        owner = requests.get(f"{service.url}/v2/endpoints/{harness.endpoint_id}",
                             headers={"Authorization": f"Bearer {service.token('robot')}"}, timeout=10)
        assert owner.status_code == 200 and owner.json()["owner"] == "robot"
    finally:
        harness.stop()


def test_identity_lock_on_both_sides(local_env, tmp_path):
    service, env = local_env
    harness = EndpointHarness(service, tmp_path / "shared-gc")  # logged in as "researcher"
    harness.start()
    harness.stop()
    other = service.token("mallory")
    assert harness.cli("login", "--force", "--token", other).returncode == 0
    refused = harness.cli("start", harness.name)
    assert refused.returncode == Exit.NO_PERMISSION
    assert "registered by researcher" in refused.stderr and "mallory" in refused.stderr
    # The service refuses it too, whatever the endpoint's files say.
    (harness.directory / "endpoint.json").write_text(f'{{"endpoint_id": "{harness.endpoint_id}"}}')
    refused = harness.cli("start", harness.name)
    assert refused.returncode == Exit.NO_PERMISSION and "that the identity logged in now may register" in refused.stderr
    assert "researcher" not in refused.stderr  # the service does not say whose it is


# ---------------------------------------------------------------- hosted service, fake Globus Auth


@pytest.fixture
def hosted_env(tmp_path):
    auth = FakeGlobusAuth(clients={"c0ffee00-0000-4000-8000-000000000001": "client-secret-value"})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLOBUS_COMPUTE_CLIENT", "GLOBUS_SDK"))}
    env.update(GLOBUS_COMPUTE_USER_DIR=str(tmp_path / "gc"), GLOBUS_SDK_SERVICE_URL_AUTH=auth.url)
    yield auth, env
    auth.close()


def test_globus_auth_native_login_whoami_refresh_logout(hosted_env, tmp_path):
    auth, env = hosted_env
    login = endpoint_cli(env, "login", input="good-code\n")
    assert login.returncode == 0, login.stderr
    assert f"{auth.url}v2/oauth2/authorize?" in login.stdout
    assert "client_id=4cf29807-cf21-49ec-9443-ff9a3fb9f81c" in login.stdout
    assert "Enter the resulting Authorization Code" in login.stdout
    assert f"Logged in to {HOSTED} as alice@example.org" in login.stdout
    assert auth.grants == ["authorization_code"]
    assert stat.S_IMODE((tmp_path / "gc" / "storage.db").stat().st_mode) == 0o600

    who = endpoint_cli(env, "whoami")
    assert who.returncode == 0 and "alice@example.org" in who.stdout and auth.identity_id in who.stdout
    assert "Linked identities" not in who.stdout
    linked = endpoint_cli(env, "whoami", "--linked-identities")
    assert "Linked identities: alice@campus.edu (66666666-7777-4888-9999-000000000000)" in linked.stdout
    assert auth.grants == ["authorization_code"]  # still fresh: no refresh

    out = endpoint_cli(env, "logout")
    assert out.returncode == 0 and "Logged out" in out.stdout
    assert set(auth.revoked) == auth.issued()  # every access and refresh token revoked
    assert endpoint_cli(env, "whoami").returncode == Exit.NO_PERMISSION


def test_expired_tokens_are_refreshed(hosted_env):
    auth, env = hosted_env
    auth.lifetime_s = 30  # under the refresh margin: every use refreshes
    assert endpoint_cli(env, "login", input="good-code\n").returncode == 0
    refreshes = auth.grants.count("refresh_token")
    who = endpoint_cli(env, "whoami")
    assert who.returncode == 0, who.stderr
    assert auth.grants.count("refresh_token") == refreshes + 1 and auth.grants[0] == "authorization_code"


def test_a_wrong_code_or_no_code_stores_nothing(hosted_env, tmp_path):
    auth, env = hosted_env
    wrong = endpoint_cli(env, "login", input="bad-code\n")
    assert wrong.returncode == Exit.NO_PERMISSION and "refused the code" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    empty = endpoint_cli(env, "login", input="\n")
    assert empty.returncode == Exit.NO_PERMISSION and "no authorization code" in empty.stderr
    assert endpoint_cli(env, "whoami").returncode == Exit.NO_PERMISSION


def test_start_without_credentials_and_no_terminal_says_how_to_log_in(hosted_env, tmp_path):
    _, env = hosted_env
    assert endpoint_cli(env, "configure", "ep").returncode == 0
    result = endpoint_cli(env, "start", "ep")
    assert result.returncode == Exit.NO_PERMISSION
    assert "No credentials for the Compute service at https://compute.api.globus.org" in result.stderr
    assert "globus-compute-endpoint login" in result.stderr


def test_start_without_credentials_on_a_terminal_logs_in_first(hosted_env, tmp_path):
    """`script` gives start a real terminal; the code is typed at the prompt."""
    auth, env = hosted_env
    assert endpoint_cli(env, "configure", "ep").returncode == 0
    command = f"{BIN_DIR / 'globus-compute-endpoint'} start ep"
    result = subprocess.run(["script", "-qec", command, "/dev/null"], input="good-code\n", env=env, text=True,
                            capture_output=True, timeout=120)
    assert "No stored credentials; logging in first." in result.stdout
    assert "Enter the resulting Authorization Code" in result.stdout
    assert auth.grants[:1] == ["authorization_code"]
    # Logged in; registration then fails only because the hosted service is out of reach here.
    assert "Registering with the Compute service at https://compute.api.globus.org as alice@example.org" \
        in result.stdout


def test_client_identity_against_globus_auth(hosted_env):
    auth, env = hosted_env
    client_env = {**env, "GLOBUS_COMPUTE_CLIENT_ID": "c0ffee00-0000-4000-8000-000000000001",
                  "GLOBUS_COMPUTE_CLIENT_SECRET": "client-secret-value"}
    who = endpoint_cli(client_env, "whoami")
    assert who.returncode == 0, who.stderr
    assert "client identity alice@example.org" in who.stdout and auth.grants == ["client_credentials"]
    bad = endpoint_cli({**client_env, "GLOBUS_COMPUTE_CLIENT_SECRET": "nope"}, "whoami")
    assert bad.returncode == Exit.NO_PERMISSION and "refused" in bad.stderr and "nope" not in bad.stderr


# ---------------------------------------------------------------- secrets stay secret


def test_no_secret_in_logs_process_titles_or_status_reports(start_service, broker_url, tmp_path):
    """A full start / submit / stop run at DEBUG, as a client identity, with a broker password
    of its own: none of the secrets appears in any log, any process's command line, or the
    status reports."""
    import uuid

    vhost = broker_url.rsplit("/", 1)[1]
    broker_user, broker_password = f"scan-{uuid.uuid4().hex[:8]}", f"brokerpw-{uuid.uuid4().hex}"
    subprocess.run(["rabbitmqctl", "-q", "add_user", broker_user, broker_password], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, broker_user, ".*", ".*", ".*"], check=True,
                   capture_output=True)
    try:
        service = start_service(public_broker_url=f"amqp://{broker_user}:{broker_password}@127.0.0.1:5672/{vhost}")
        _scan_a_full_run(service, tmp_path, broker_password)
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_user", broker_user], capture_output=True)


def power(base, exponent):
    return base**exponent


def _scan_a_full_run(service, tmp_path, broker_password: str) -> None:
    created = subprocess.run([str(BIN_DIR / "compute-service"), "client", "create", "--identity", "researcher",
                              "--data-dir", str(service.data_dir)], capture_output=True, text=True, check=True)
    client_vars = dict(line.split("=", 1) for line in created.stdout.split())
    harness = EndpointHarness(service, tmp_path / "gc", config_text=THREAD_POOL_CONFIG)
    user_token = harness.token
    harness.env.update(client_vars)
    secrets = {"client secret": client_vars["GLOBUS_COMPUTE_CLIENT_SECRET"], "user token": user_token,
               "broker password": broker_password}
    shown = [harness.cli("--debug", "start", harness.name)]
    assert shown[0].returncode == 0, shown[0].stderr
    seen_processes = []
    try:
        [result] = harness.run(power, [(2, 8)])
        assert result == 256
        ps = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True).stdout
        seen_processes.append(ps)
        for process in harness.tree_processes():
            seen_processes.append(" ".join(process.cmdline()))
        headers = {"Authorization": f"Bearer {user_token}"}
        status = requests.get(f"{service.url}/v2/endpoints/{harness.endpoint_id}/status", headers=headers,
                              timeout=10).text
    finally:
        shown.append(harness.cli("stop", harness.name))
    texts = {"endpoint.log": harness.log(), "service log": service.log.read_text(), "ps": "\n".join(seen_processes),
             "status report": status, "CLI output": "".join(r.stdout + r.stderr for r in shown)}
    assert "heartbeat_period" in status  # a real report was scanned
    for where, text in texts.items():
        for what, secret in secrets.items():
            assert secret not in text, f"the {what} appears in the {where}"
