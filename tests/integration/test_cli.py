"""The CLI driven through click's runner and as a real subprocess."""

from __future__ import annotations

import re
import socket
import stat
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from compute_endpoint.endpoint.directory import EndpointDirectory, PidRecord
from compute_endpoint.endpoint.version import OFFICIAL_VERSION, __version__


def table_rows(output: str) -> list[list[str]]:
    """The cells of a texttable drawing, header included."""
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in output.splitlines() if line.startswith("|")]


def test_version(cli_process):
    result = cli_process("version")
    assert result.returncode == 0
    # The documented line, with the official release whose surface this one implements first
    # (scripts that check the 4.x line read it), then ours.
    assert result.stdout == (f"Globus Compute endpoint version: {OFFICIAL_VERSION} (compute-endpoint {__version__}, "
                             "a drop-in for the official 4.19 line)\n")


def test_configure_then_list_shows_initialized_as_documented(cli_process, user_dir):
    result = cli_process("configure", "ep1")
    assert result.returncode == 0, result.stderr
    config_file = user_dir / "ep1" / "config.yaml"
    assert result.stdout == (
        "Created profile for endpoint named <ep1>\n\n"
        f"\tConfiguration file: {config_file}\n\n"
    )
    assert stat.S_IMODE((user_dir / "ep1").stat().st_mode) == 0o700
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600

    listing = cli_process("list")
    assert listing.returncode == 0
    lines = listing.stdout.splitlines()
    assert re.fullmatch(r"\+=+\+=+\+=+\+", lines[2])  # the header rule of the documented table
    assert table_rows(listing.stdout) == [
        ["Endpoint ID", "Status", "Endpoint Name"],
        ["None", "Initialized", "ep1"],
    ]


def test_list_without_endpoints(cli_process):
    result = cli_process("list")
    assert (result.returncode, result.stdout) == (0, "No endpoints configured!\n")


def test_config_dir_option_overrides_the_environment(cli_process, tmp_path):
    other = tmp_path / "elsewhere"
    assert cli_process("--config-dir", str(other), "configure", "x").returncode == 0
    assert (other / "x" / "config.yaml").is_file()
    assert cli_process("list").stdout == "No endpoints configured!\n"


def test_configure_display_name_is_written(cli, user_dir):
    result = cli("configure", "ep", "--display-name", "My laptop")
    assert result.exit_code == 0
    assert "display_name: My laptop\n" in (user_dir / "ep" / "config.yaml").read_text()


def test_configure_refuses_existing_endpoint(cli, user_dir):
    assert cli("configure", "ep").exit_code == 0
    (user_dir / "ep" / "config.yaml").write_text("mine: 1\n")
    result = cli("configure", "ep")
    assert result.exit_code == 1
    assert "Endpoint 'ep' already exists" in result.output
    assert (user_dir / "ep" / "config.yaml").read_text() == "mine: 1\n"


@pytest.mark.parametrize("name, phrase", [
    (".hidden", "must not start with a dot"),
    ("a/b", "contains '/'"),
    ("a b", "contains ' '"),
    ("x" * 129, "at most 128"),
])
def test_configure_rejects_bad_names_without_traceback(cli_process, user_dir, name, phrase):
    result = cli_process("configure", name)
    assert result.returncode == 2
    assert phrase in result.stderr
    assert "Traceback" not in result.stderr
    assert not user_dir.exists() or not any(user_dir.iterdir())


def test_list_shows_every_state(cli, user_dir):
    for name in ("a_init", "b_stopped", "c_running", "d_gone", "e_elsewhere"):
        assert cli("configure", name).exit_code == 0
    ids = {name: uuid.uuid4() for name in ("b_stopped", "c_running", "d_gone", "e_elsewhere")}
    for name, endpoint_id in ids.items():
        EndpointDirectory(user_dir, name).write_endpoint_id(endpoint_id)
    me = psutil.Process()
    host = socket.gethostname()
    EndpointDirectory(user_dir, "c_running").write_pid_record(PidRecord(me.pid, host, me.create_time()))
    EndpointDirectory(user_dir, "d_gone").write_pid_record(PidRecord(me.pid, host, me.create_time() - 99))
    EndpointDirectory(user_dir, "e_elsewhere").write_pid_record(PidRecord(me.pid, "node7", me.create_time()))

    rows = table_rows(cli("list").output)[1:]
    assert rows == [
        ["None", "Initialized", "a_init"],
        [str(ids["b_stopped"]), "Stopped", "b_stopped"],
        [str(ids["c_running"]), "Running", "c_running"],
        [str(ids["d_gone"]), "Disconnected", "d_gone"],
        [str(ids["e_elsewhere"]), "Disconnected (on host node7)", "e_elsewhere"],
    ]


def test_delete_asks_first_and_keeps_the_endpoint_when_declined(cli, user_dir):
    cli("configure", "ep")
    result = cli("delete", "ep", input="n\n")
    assert result.exit_code == 1
    assert "Delete endpoint 'ep'" in result.output
    assert (user_dir / "ep").is_dir()
    result = cli("delete", "ep", input="y\n")
    assert result.exit_code == 0
    assert not (user_dir / "ep").exists()


def test_delete_unknown_endpoint_says_so(cli_process):
    result = cli_process("delete", "nope", "--yes")
    assert result.returncode == 1
    assert "Endpoint 'nope' is not configured" in result.stderr


@pytest.fixture
def running_endpoint(user_dir, cli):
    """An endpoint whose pid file names a real live process (one that ignores nothing)."""
    cli("configure", "ep")
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    directory = EndpointDirectory(user_dir, "ep")
    directory.write_endpoint_id(uuid.uuid4())
    directory.write_pid_record(
        PidRecord(process.pid, socket.gethostname(), psutil.Process(process.pid).create_time())
    )
    yield process
    process.kill()
    process.wait()


def test_delete_refuses_a_running_endpoint_without_force(cli_process, user_dir, running_endpoint):
    result = cli_process("delete", "ep", "--yes")
    assert result.returncode == 1
    assert "is running" in result.stderr and "--force" in result.stderr
    assert running_endpoint.poll() is None
    assert (user_dir / "ep").is_dir()


def test_delete_force_stops_the_process_then_deletes(cli, user_dir, running_endpoint):
    started = time.monotonic()
    result = cli("delete", "ep", "--yes", "--force")
    assert result.exit_code == 0, result.output
    assert not psutil.pid_exists(running_endpoint.pid) or running_endpoint.poll() is not None
    assert time.monotonic() - started < 5  # SIGTERM sufficed: no wait for the kill timeout
    assert not (user_dir / "ep").exists()
