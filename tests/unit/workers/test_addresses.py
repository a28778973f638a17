"""Where worker pools reach the interchange: this host's real addresses, or a named one."""

from __future__ import annotations

import socket

import psutil
import pytest

from compute_endpoint.workers.addresses import AddressError, host_addresses, resolve_address


def test_every_ipv4_address_of_the_host_and_loopback_last():
    found = host_addresses()
    interfaces = {a.address for addresses in psutil.net_if_addrs().values() for a in addresses
                  if a.family == socket.AF_INET}
    assert interfaces <= set(found)
    loopback = [a for a in found if a.startswith("127.")]
    assert found[len(found) - len(loopback):] == loopback


def test_a_named_address_is_taken_as_it_is_and_a_finder_is_asked():
    assert resolve_address(None) is None
    assert resolve_address("10.1.2.3") == "10.1.2.3"
    assert resolve_address({"type": "address_by_interface", "ifname": "lo"}) == "127.0.0.1"


def test_a_missing_interface_names_the_ones_there_are():
    with pytest.raises(AddressError) as caught:
        resolve_address({"type": "address_by_interface", "ifname": "no-such-if0"})
    message = str(caught.value)
    assert "no interface 'no-such-if0'" in message and "lo" in message.split("interfaces here:")[1]
