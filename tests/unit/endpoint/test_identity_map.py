"""Who an identity runs as on a multi-user endpoint (identity_map.py), on real mapping files
and this machine's real passwd database; and configure --multi-user's files."""

from __future__ import annotations

import json
import os
import pwd

import pytest
import yaml

from compute_endpoint.endpoint.identity_map import IdentityMap, LocalUser, MappingRefused


def identity(username: str) -> dict:
    return {"id": f"id-{username}", "sub": f"id-{username}", "username": username, "status": "used"}


def write_mapping(path, rules: dict[str, str]) -> None:
    path.write_text(json.dumps([{"DATA_TYPE": "expression_identity_mapping#1.0.0", "mappings": [
        {"source": "{username}", "match": match, "output": output} for match, output in rules.items()]}]))


def a_local_user_other_than_us() -> pwd.struct_passwd:
    for record in pwd.getpwall():
        if record.pw_uid not in (0, os.geteuid()):
            return record
    pytest.skip("no local account besides root and us")


def test_the_first_identity_that_maps_wins_and_the_user_is_read_from_passwd(tmp_path):
    other = a_local_user_other_than_us()
    mapping = tmp_path / "map.json"
    write_mapping(mapping, {r"(.*)@university\.edu": other.pw_name})
    user = IdentityMap(mapping, "ep").local_user([identity("guest@elsewhere.org"), identity("jd@university.edu")])
    assert user == LocalUser(other.pw_name, other.pw_uid, other.pw_gid, other.pw_dir, other.pw_shell or "/bin/sh")
    environment = user.environment({"PATH": "/opt/bin", "HOME": "/forged"})
    assert environment["HOME"] == other.pw_dir and environment["PATH"] == "/opt/bin"
    assert (environment["USER"], environment["LOGNAME"]) == (other.pw_name, other.pw_name)


@pytest.mark.parametrize(("maps_to", "told"), [
    (None, "failed to map to a local user name"),
    ("nosuchuser0x", "that local user does not exist"),
    ("root", "privileged user (uid 0)"),
])
def test_an_identity_that_maps_to_no_usable_user_is_refused_without_naming_accounts(tmp_path, maps_to, told):
    mapping = tmp_path / "map.json"
    write_mapping(mapping, {"mallory": maps_to} if maps_to else {"alice": "alice"})
    with pytest.raises(MappingRefused) as refused:
        IdentityMap(mapping, "ep").local_user([identity("mallory")])
    assert told in str(refused.value)
    assert "nosuchuser0x" not in str(refused.value) and "mallory" in refused.value.detail


def test_an_edited_mapping_is_read_again_and_a_broken_edit_keeps_the_last_good_one(tmp_path):
    other = a_local_user_other_than_us()
    mapping = tmp_path / "map.json"
    write_mapping(mapping, {"alice": other.pw_name})
    identities = IdentityMap(mapping, "ep")
    with pytest.raises(MappingRefused):
        identities.local_user([identity("dave")])
    write_mapping(mapping, {"alice": other.pw_name, "dave": other.pw_name})
    assert identities.local_user([identity("dave")]).name == other.pw_name
    mapping.write_text("[{not json")
    assert identities.local_user([identity("dave")]).name == other.pw_name


def test_a_mapping_that_is_not_a_list_of_documents_fails_at_load(tmp_path):
    mapping = tmp_path / "map.json"
    mapping.write_text('{"DATA_TYPE": "expression_identity_mapping#1.0.0"}')
    with pytest.raises(ValueError, match="JSON list"):
        IdentityMap(mapping, "ep")


def test_configure_multi_user_writes_the_officials_layout(cli, user_dir):
    assert "--contact-email" in cli("configure", "--multi-user", "mu").output  # required, as the official's
    made = cli("configure", "--multi-user", "--contact-email", "admin@example.edu", "mu")
    assert made.exit_code == 0, made.output
    directory = user_dir / "mu"
    config = yaml.safe_load((directory / "config.yaml").read_text())
    assert config["multi_user"] is True and config["email"] == "admin@example.edu"
    assert config["identity_mapping_config_path"] == str(directory / "example_identity_mapping_config.json")
    assert config["pam"] == {"enable": False, "service_name": "globus-compute-endpoint"}
    example = IdentityMap(directory / "example_identity_mapping_config.json", "ep")  # it loads, as start will
    with pytest.raises(MappingRefused, match="does not exist"):  # <netid>@example.edu maps to <netid>
        example.local_user([identity("nosuchnetid0x@example.edu")])
    assert (directory / "user_config_template.yaml.j2").exists()
    # The official's valued form, and the mapping option's guard.
    assert cli("configure", "--multi-user", "true", "--contact-email", "a@b.c", "mu2").exit_code == 0
    refused = cli("configure", "--id-mapping-config", str(directory / "config.yaml"), "single")
    assert refused.exit_code != 0 and "requires multi user support" in refused.output
