"""The HTTP helpers every route shares, without a server: Basic credentials, JSON depth."""

from __future__ import annotations

import base64

from compute_endpoint.protocol.json_depth import json_depth
from compute_endpoint.service.http import basic_credentials
from compute_endpoint.service.routes.endpoints import MAX_METADATA_DEPTH


class FakeRequest:
    def __init__(self, authorization: str):
        self.headers = {"authorization": authorization}


def basic(text: str) -> FakeRequest:
    return FakeRequest("Basic " + base64.b64encode(text.encode()).decode())


def test_basic_credentials_are_read_and_garbage_is_no_one():
    assert basic_credentials(basic("client:s%3Acret")) == ("client", "s:cret")
    assert basic_credentials(FakeRequest("Bearer abc")) == ("", "")
    assert basic_credentials(FakeRequest("Basic !!!not-base64")) == ("", "")
    assert basic_credentials(FakeRequest("")) == ("", "")


def test_json_depth_counts_without_recursing_and_stops_past_the_limit():
    assert json_depth({"a": [1, {"b": 2}]}, MAX_METADATA_DEPTH) == 4
    assert json_depth({"a": [1, {"b": 2}]}, MAX_METADATA_DEPTH, scalars_count=False) == 3  # user options' way
    deep: object = 0
    for _ in range(100_000):  # deeper than Python's recursion limit
        deep = [deep]
    assert json_depth(deep, MAX_METADATA_DEPTH) == MAX_METADATA_DEPTH + 1
