"""Idle shutdown counted in heartbeats, as the official endpoint counts it."""

from __future__ import annotations

from compute_endpoint.endpoint.idle import IdleWatch


def beats(watch: IdleWatch, received: int, sent: int, count: int) -> list[str | None]:
    return [watch.heartbeat(received, sent) for _ in range(count)]


def test_off_while_soft_is_zero():
    assert beats(IdleWatch(soft_limit=0, hard_limit=1), 5, 0, 100) == [None] * 100


def test_soft_counts_only_once_work_was_done_and_every_result_sent():
    watch = IdleWatch(soft_limit=3, hard_limit=100, period_s=5)
    assert beats(watch, 0, 0, 10) == [None] * 10  # never worked: not idle (the hard limit is far)
    assert watch.heartbeat(4, 4) is None  # work moved: the count starts over
    stops = beats(watch, 4, 4, 3)
    assert stops[:2] == [None, None]
    assert stops[2] == "idle: no task for 3 heartbeat periods of 5 s (idle_heartbeats_soft)"


def test_movement_starts_the_count_over():
    watch = IdleWatch(soft_limit=2, hard_limit=100)
    watch.heartbeat(1, 1)
    assert watch.heartbeat(1, 1) is None
    assert watch.heartbeat(2, 2) is None  # a task came and went
    assert watch.heartbeat(2, 2) is None
    assert watch.heartbeat(2, 2) is not None


def test_hard_stops_even_with_tasks_outstanding_after_its_limit():
    watch = IdleWatch(soft_limit=1, hard_limit=4, period_s=30)
    watch.heartbeat(3, 1)  # two tasks outstanding, never answered
    stops = beats(watch, 3, 1, 5)
    assert stops[:4] == [None] * 4
    assert stops[4] == ("no task or result moved for 5 heartbeat periods of 30 s, with 2 task(s) outstanding "
                        "(idle_heartbeats_hard)")


def test_hard_is_at_least_one_more_than_soft():
    watch = IdleWatch(soft_limit=5, hard_limit=1)
    watch.heartbeat(2, 0)
    stops = beats(watch, 2, 0, 7)
    assert stops.index(next(s for s in stops if s)) == 6  # after soft + 1 = 6 silent beats, not 1
