"""Endpoint directory: name rules, permissions, and the files it keeps."""

from __future__ import annotations

import stat
import uuid

import pytest

from compute_endpoint.endpoint.directory import (
    EndpointDirectory,
    EndpointDirectoryError,
    PidRecord,
    list_endpoint_dirs,
    validate_name,
)


@pytest.mark.parametrize("name", ["ep1", "my_first_endpoint", "a.b-c", "x" * 128, "ünïcode"])
def test_good_names_are_accepted(name):
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name, phrase",
    [
        ("", "must not be empty"),
        ("x" * 129, "129 characters long; at most 128"),
        (".hidden", "must not start with a dot"),
        ("a/b", "contains '/'"),
        ("a\\b", "contains '\\\\'"),
        ("a b", "contains ' '"),
        ("a\tb", "contains '\\t'"),
        ("it's", "contains \"'\""),
        ('say"hi', "contains '\"'"),
    ],
)
def test_bad_names_say_which_rule_they_break(name, phrase):
    with pytest.raises(EndpointDirectoryError) as caught:
        validate_name(name)
    assert phrase in str(caught.value)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_makes_private_directory_and_files(tmp_path):
    directory = EndpointDirectory(tmp_path / "base", "ep")
    directory.create("engine: {type: ThreadPoolEngine}\n")
    directory.write_endpoint_id(uuid.uuid4())
    directory.write_pid_record(PidRecord(1, "h", 1.0))
    assert mode(tmp_path / "base") == 0o700
    assert mode(directory.path) == 0o700
    for f in (directory.config_file, directory.endpoint_json, directory.pid_file):
        assert mode(f) == 0o600, f


def test_create_refuses_an_existing_endpoint(tmp_path):
    directory = EndpointDirectory(tmp_path, "ep")
    directory.create("a: 1\n")
    with pytest.raises(EndpointDirectoryError, match="already exists"):
        directory.create("b: 2\n")
    assert directory.config_file.read_text() == "a: 1\n"


def test_endpoint_id_round_trips_and_bad_file_reads_as_unregistered(tmp_path):
    directory = EndpointDirectory(tmp_path, "ep")
    directory.create("")
    assert directory.read_endpoint_id() is None
    endpoint_id = uuid.uuid4()
    directory.write_endpoint_id(endpoint_id)
    assert directory.read_endpoint_id() == endpoint_id
    directory.endpoint_json.write_text('{"endpoint_id": "not-a-uuid"}')
    assert directory.read_endpoint_id() is None


def test_list_finds_only_folders_with_a_config(tmp_path):
    for name in ("b", "a"):
        EndpointDirectory(tmp_path, name).create("")
    (tmp_path / "stray").mkdir()
    (tmp_path / "storage.db").write_text("")
    assert [d.name for d in list_endpoint_dirs(tmp_path)] == ["a", "b"]
    assert list_endpoint_dirs(tmp_path / "nothing-here") == []
