"""A function run in a throwaway process: its value or its exception comes back, and what
it imported stays in the child."""

from __future__ import annotations

import os
import sys

import pytest

from compute_endpoint.supervisor.throwaway import ThrowawayProcessFailed, in_throwaway_process


def import_and_report(name: str) -> tuple[int, bool]:
    __import__(name)
    return os.getpid(), name in sys.modules


class Unpicklable(Exception):
    def __init__(self, message: str, handle):
        super().__init__(message)
        self.handle = handle

    def __reduce__(self):
        raise TypeError("cannot pickle")


def raise_unpicklable():
    raise Unpicklable("the real reason", lambda: None)


def test_the_value_comes_back_and_the_import_stays_in_the_child():
    assert "xml.dom.minidom" not in sys.modules
    child, imported_there = in_throwaway_process(import_and_report, "xml.dom.minidom")
    assert child != os.getpid() and imported_there
    assert "xml.dom.minidom" not in sys.modules


def test_an_exception_comes_back_as_itself():
    with pytest.raises(KeyError, match="missing"):
        in_throwaway_process(lambda: {}["missing"])


def test_an_exception_that_cannot_travel_comes_back_as_its_message():
    with pytest.raises(ThrowawayProcessFailed, match="the real reason"):
        in_throwaway_process(raise_unpicklable)


def test_a_child_that_dies_says_so():
    with pytest.raises(ThrowawayProcessFailed, match="ended without an answer"):
        in_throwaway_process(os._exit, 3)
