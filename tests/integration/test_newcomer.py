"""A newcomer's first hour, through the installed commands: errors that point to the fix."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from compute_endpoint.endpoint.exit_codes import Exit
from tests.conftest import BIN_DIR

pytestmark = pytest.mark.slow


def run(user_dir, *args, input=None, env=None, timeout=60):
    return subprocess.run([str(BIN_DIR / "globus-compute-endpoint"), *args], capture_output=True, text=True,
                          input=input, timeout=timeout,
                          env=dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(user_dir), **(env or {})))


def test_a_misspelt_endpoint_name_gets_a_did_you_mean(user_dir):
    assert run(user_dir, "configure", "my_first_endpoint").returncode == 0
    result = run(user_dir, "start", "my_first_enpoint")
    assert result.returncode == 1
    assert "did you mean 'my_first_endpoint'?" in result.stderr


def test_credentials_for_another_service_name_the_fix(user_dir, start_service):
    service = start_service()
    assert run(user_dir, "login", "--service", service.url, "--token", service.token("newcomer")).returncode == 0
    assert run(user_dir, "configure", "ep").returncode == 0
    for command in (["whoami"], ["start", "ep"]):
        result = run(user_dir, *command, env={"GLOBUS_SDK_SERVICE_URL_COMPUTE": ""})
        assert result.returncode == Exit.NO_PERMISSION, result.stdout + result.stderr
        assert f"You are logged in to {service.url}" in result.stderr
        assert "local_compute_services: true" in result.stderr


def test_a_service_that_does_not_answer_is_not_a_credentials_problem(user_dir, start_service):
    service = start_service()
    assert run(user_dir, "login", "--service", service.url, "--token", service.token("newcomer")).returncode == 0
    service.stop()
    result = run(user_dir, "whoami", "--service", service.url)
    assert result.returncode == Exit.UNAVAILABLE, result.stdout + result.stderr
    assert "cannot reach the Compute service" in result.stderr and "compute-service serve" in result.stderr


def test_login_with_a_wrong_token_keeps_the_good_credentials(user_dir, start_service):
    service = start_service()
    assert run(user_dir, "login", "--service", service.url, "--token", service.token("newcomer")).returncode == 0
    wrong = run(user_dir, "login", "--service", service.url, "--force", "--token", "not-a-token")
    assert wrong.returncode == Exit.NO_PERMISSION
    assert "does not accept this token" in wrong.stderr and "stored before are kept" in wrong.stderr
    assert "login --force" not in wrong.stderr
    still = run(user_dir, "whoami", "--service", service.url)
    assert still.returncode == 0 and "as user newcomer" in still.stdout


def test_login_without_a_terminal_says_how_to_give_the_token(user_dir, start_service):
    service = start_service()
    result = run(user_dir, "login", "--service", service.url, input="")
    assert result.returncode == 2
    assert "no terminal to ask for the token" in result.stderr and "--token -" in result.stderr
    assert "GetPassWarning" not in result.stderr and "Aborted!" not in result.stderr


def test_a_broker_on_the_wrong_port_fails_fast_and_is_not_recorded_as_a_start(user_dir, start_service):
    service = start_service()
    assert run(user_dir, "login", "--service", service.url, "--token", service.token("newcomer")).returncode == 0
    assert run(user_dir, "configure", "ep").returncode == 0
    (user_dir / "ep" / "config.yaml").write_text("amqp_port: 443\nengine:\n  type: ThreadPoolEngine\n")
    started = time.monotonic()
    result = run(user_dir, "start", "ep", env={"GLOBUS_SDK_SERVICE_URL_COMPUTE": service.url})
    took = time.monotonic() - started
    assert result.returncode == Exit.UNAVAILABLE, result.stdout + result.stderr
    assert "config.yaml sets amqp_port" in result.stderr and "listens on 5672" in result.stderr
    assert took < 8, f"start took {took:.1f} s to say the broker does not answer"
    listed = run(user_dir, "list").stdout
    assert "Initialized" in listed and "Stopped" not in listed, listed


def test_config_problems_are_listed_in_file_order(user_dir):
    from compute_endpoint.endpoint.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as caught:
        parse_config("engine:\n  type: ThreadPoolEngine\n  max_workers: -1\nheartbeat_period: x\namqp_port: 1\n")
    assert [p.line for p in caught.value.problems] == sorted(p.line for p in caught.value.problems)


def test_help_texts_end_where_their_sentences_end(user_dir):
    for command in (["globus-compute-endpoint", "--help"], ["compute-service", "--help"]):
        listing = subprocess.run([str(BIN_DIR / command[0]), *command[1:]], capture_output=True, text=True).stdout
        commands = listing.split("Commands:")[1]
        assert "..." not in commands, commands


def test_foreground_start_says_it_runs_and_that_it_stopped(user_dir, start_service):
    service = start_service()
    assert run(user_dir, "login", "--service", service.url, "--token", service.token("newcomer")).returncode == 0
    assert run(user_dir, "configure", "ep").returncode == 0
    (user_dir / "ep" / "config.yaml").write_text("engine:\n  type: ThreadPoolEngine\n  max_workers: 1\n")
    process = subprocess.Popen([str(BIN_DIR / "globus-compute-endpoint"), "start", "ep", "--foreground"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=dict(os.environ, GLOBUS_COMPUTE_USER_DIR=str(user_dir),
                                        GLOBUS_SDK_SERVICE_URL_COMPUTE=service.url))
    lines = []
    deadline = time.monotonic() + 60
    while not any("is running" in line for line in lines):
        assert time.monotonic() < deadline and process.poll() is None, lines
        lines.append(process.stdout.readline())
    assert "Ctrl-C or SIGTERM stops it" in lines[-1]
    process.send_signal(signal.SIGINT)  # Ctrl-C
    rest, _ = process.communicate(timeout=60)
    assert "Endpoint ep stopped" in rest, rest
