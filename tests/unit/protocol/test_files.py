"""Private files are written whole or not at all, and only their owner can read them."""

from __future__ import annotations

import os
import stat

import pytest

from compute_endpoint.protocol.files import write_private_file


def test_written_whole_and_private(tmp_path):
    path = tmp_path / "secret.json"
    path.write_text("old")
    os.chmod(path, 0o644)
    with open(path) as reader:
        write_private_file(path, '{"token": 1}')
        assert reader.read() == "old"  # a reader of the old file is not disturbed
    assert path.read_text() == '{"token": 1}'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret.json"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "data"
    write_private_file(path, b"good")
    with pytest.raises(TypeError):
        write_private_file(path, 12345)  # type: ignore[arg-type]
    assert path.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["data"]
