"""What the supervisor is told, and the states it keeps: checked as data."""

from __future__ import annotations

import signal

import pytest

from compute_endpoint.supervisor.child import describe_exit
from compute_endpoint.supervisor.spec import ChildSpec, RestartPolicy
from compute_endpoint.supervisor.states import LIVE_STATES, TRANSITIONS, ChildState


def test_backoff_doubles_from_the_first_quick_crash_up_to_its_ceiling():
    policy = RestartPolicy(backoff_initial_s=0.1, backoff_max_s=1.0)
    assert [policy.backoff(n) for n in range(6)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0]


def test_a_child_target_must_name_module_and_function():
    with pytest.raises(ValueError, match="module:function"):
        ChildSpec(name="x", target="no_colon")
    assert ChildSpec(name="x", target="json:dumps").resolve().__name__ == "dumps"


def test_live_states_can_only_end_by_stopping_or_crashing():
    assert LIVE_STATES == {ChildState.STARTING, ChildState.RUNNING}
    for state in LIVE_STATES:
        assert TRANSITIONS[state] >= {ChildState.STOPPING, ChildState.BACKOFF, ChildState.STOPPED}
    assert TRANSITIONS[ChildState.STOPPING] == {ChildState.STOPPED}


def test_exits_are_described_with_what_they_likely_mean():
    assert describe_exit(0) == "exited with status 0"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL: perhaps out of memory?"
    assert "stacks are in the log" in describe_exit(-signal.SIGABRT)
    assert describe_exit(-signal.SIGTERM) == "killed by SIGTERM"
