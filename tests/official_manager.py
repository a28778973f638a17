"""The official globus-compute-endpoint 4.19 as a template-capable endpoint (its manager mode),
run against our compute-service. As root it insists on being a multi-user endpoint, so it
runs as an ordinary user of its own, from a venv of that user's (the system Python: ours
lives under /root, which that user cannot read)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from filelock import FileLock

from .conftest import BIN_DIR

USER = "gcofficial"
VERSION = "4.19.0"


def official_user_venv() -> Path:
    """The user's venv with the official endpoint, made once (a minute or two)."""
    if os.geteuid() != 0:
        pytest.skip("running the official endpoint as a user of its own needs root")
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no system Python (/usr/bin/python3) for the official endpoint's venv")
    with FileLock(Path(tempfile.gettempdir()) / "compute-endpoint-tests-official-user.lock", timeout=900):
        try:
            home = Path(pwd.getpwnam(USER).pw_dir)
        except KeyError:
            subprocess.run(["useradd", "--create-home", USER], check=True, capture_output=True)
            home = Path(pwd.getpwnam(USER).pw_dir)
        venv = home / "official-venv"
        script = venv / "bin" / "globus-compute-endpoint"
        if not script.exists():
            made = subprocess.run(["runuser", "-u", USER, "--", "bash", "-c",
                                   f"/usr/bin/python3 -m venv --clear {venv} && {venv}/bin/pip install --quiet "
                                   f"globus-compute-endpoint=={VERSION}"], capture_output=True, text=True, timeout=900)
            assert made.returncode == 0 and script.exists(), made.stdout[-2000:] + made.stderr[-2000:]
        return venv


class OfficialManager:
    """An official 4.19 template-capable endpoint in the user's home, with client credentials
    of compute-service's own (its OAuth2 routes stand in for Globus Auth)."""

    def __init__(self, service, identity: str, template: str):
        self.venv = official_user_venv()
        home = Path(pwd.getpwnam(USER).pw_dir)
        self.base = home / f"gc-{os.getpid()}-{time.monotonic_ns()}"
        credentials = subprocess.run([str(BIN_DIR / "compute-service"), "client", "create", "--identity", identity,
                                      "--data-dir", str(service.data_dir),
                                      *(["--db", service.db_url] if service.db_url else [])],
                                     check=True, capture_output=True, text=True).stdout
        self.env = {"HOME": str(home), "PATH": f"{self.venv}/bin:/usr/local/bin:/usr/bin:/bin",
                    "GLOBUS_COMPUTE_USER_DIR": str(self.base), "GLOBUS_SDK_SERVICE_URL_AUTH": f"{service.url}/",
                    **dict(line.split("=", 1) for line in credentials.splitlines() if line.startswith("GLOBUS_"))}
        self.run("globus-compute-endpoint", "configure", "official")
        self.directory = self.base / "official"
        self.write("config.yaml", "display_name: null\nlocal_compute_services: true\namqp_port: 5672\n")
        self.write("user_config_template.yaml.j2", template)
        self.process: subprocess.Popen | None = None

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        done = subprocess.run(self._as_user(args), capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done

    def write(self, name: str, text: str) -> None:
        subprocess.run(["runuser", "-u", USER, "--", "tee", str(self.directory / name)], input=text, text=True,
                       check=True, capture_output=True)

    def _as_user(self, args) -> list[str]:
        return ["runuser", "-u", USER, "--", "env", "-i", *(f"{k}={v}" for k, v in self.env.items()), *args]

    def start(self) -> str:
        """Start it (it stays in the foreground); its endpoint id once registered."""
        self.process = subprocess.Popen(self._as_user(["globus-compute-endpoint", "start", "official"]),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the official endpoint exited: {self.log()[-3000:]}"
            if "Awaiting messages from queue" in self.log():
                import json

                return json.loads((self.directory / "endpoint.json").read_text())["endpoint_id"]
            time.sleep(0.2)
        raise AssertionError(f"the official endpoint did not start: {self.log()[-3000:]}")

    def log(self) -> str:
        try:
            return (self.directory / "endpoint.log").read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        subprocess.run(["pkill", "-KILL", "-f", str(self.base)], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)
