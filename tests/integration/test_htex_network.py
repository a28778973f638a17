"""GlobusComputeEngine's network defaults, checked on a real interchange: reachable from
other hosts, encrypted, certificates private; and what `encrypted: false` warns about."""

from __future__ import annotations

import logging
import stat

import psutil
import pytest

from compute_endpoint.endpoint.config import parse_config
from compute_endpoint.endpoint.tree import engine_options
from compute_endpoint.workers.engines.base import build_engine
from compute_endpoint.workers.engines.htex import UNENCRYPTED_WARNING

pytestmark = pytest.mark.slow
NO_BLOCKS = "provider: {type: LocalProvider, init_blocks: 0, min_blocks: 0, max_blocks: 0}"


def engine_from(options: str, run_dir):
    """A GlobusComputeEngine built as the endpoint builds it: from config.yaml, defaults and all."""
    config = parse_config(f"engine: {{type: GlobusComputeEngine, {options}}}")
    return build_engine(engine_options(config.engine), "ep", run_dir=str(run_dir))


def listening_addresses(pid: int) -> set[str]:
    return {c.laddr.ip.removeprefix("::ffff:") for c in psutil.Process(pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN}


def test_by_default_the_interchange_listens_beyond_loopback_and_encrypts(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    engine = engine_from(NO_BLOCKS, tmp_path)
    try:
        assert engine.htex.address is None
        assert engine.htex.all_addresses - {"127.0.0.1"}, "pools would be told loopback only"
        listening = listening_addresses(engine.htex.interchange_proc.pid)
        assert listening and not listening <= {"127.0.0.1", "::1"}, listening
        certificates = tmp_path / "engine" / "GlobusComputeEngine" / "certificates"
        assert stat.S_IMODE(certificates.stat().st_mode) == 0o700
        assert {p.name for p in certificates.iterdir()} >= {"server.key_secret", "client.key_secret"}
        assert "encrypted with CurveZMQ" in caplog.text
        assert UNENCRYPTED_WARNING not in caplog.text
    finally:
        engine.shutdown(cancel_pending=True)


def test_unencrypted_is_possible_and_says_what_it_exposes(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    engine = engine_from(f"{NO_BLOCKS}, encrypted: false, address: 127.0.0.1", tmp_path)
    try:
        assert listening_addresses(engine.htex.interchange_proc.pid) == {"127.0.0.1"}
        # The engine's own warnings: another test's leftover thread in this worker process (an
        # SDK client's, say) may log warnings of its own meanwhile.
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("compute_endpoint")]
        assert [r.getMessage() for r in warnings] == [UNENCRYPTED_WARNING]
        assert "in the clear" in UNENCRYPTED_WARNING and "connect as a worker pool" in UNENCRYPTED_WARNING
        assert not (tmp_path / "engine" / "GlobusComputeEngine" / "certificates").exists()
    finally:
        engine.shutdown(cancel_pending=True)
