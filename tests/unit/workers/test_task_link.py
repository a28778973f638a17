"""The task link's acknowledgement window: every settled tag is acked exactly once, a
multiple ack never covers an unsettled or already-answered tag."""

from __future__ import annotations

import random

from compute_endpoint.workers.task_link import AckWindow


class FakeBroker:
    """Outstanding tags as RabbitMQ keeps them, with its rules for acks."""

    def __init__(self, tags):
        self.outstanding = set(tags)
        self.acked: list[int] = []

    def ack(self, tag: int, multiple: bool = False) -> None:
        assert tag in self.outstanding, f"unknown delivery tag {tag}"  # PRECONDITION_FAILED in RabbitMQ
        covered = sorted(t for t in self.outstanding if t <= tag) if multiple else [tag]
        self.outstanding -= set(covered)
        self.acked += covered

    def reject(self, tag: int) -> None:
        self.outstanding.remove(tag)


def apply(window: AckWindow, broker: FakeBroker, tags) -> None:
    upto, singles = window.settle(tags)
    if upto is not None:
        broker.ack(upto, multiple=True)
    for tag in singles:
        broker.ack(tag)


def test_in_order_settles_are_one_multiple_ack():
    window = AckWindow()
    for tag in range(1, 101):
        window.delivered(tag)
    assert window.settle(range(1, 51)) == (50, [])
    assert window.settle(range(51, 101)) == (100, [])


def test_a_slow_task_holds_the_multiple_ack_until_too_many_wait():
    window, broker = AckWindow(), FakeBroker(range(1, 1001))
    for tag in range(1, 1001):
        window.delivered(tag)
    apply(window, broker, range(2, 200))  # tag 1 still running
    assert broker.acked == []
    apply(window, broker, range(200, 400))  # now over MAX_WAITING: one by one
    assert sorted(broker.acked) == list(range(2, 400))
    apply(window, broker, [1])  # the slow one: nothing else is outstanding before 400
    apply(window, broker, range(400, 1001))
    assert sorted(broker.acked) == list(range(1, 1001)) and not broker.outstanding


def test_random_orders_with_requeues_ack_each_settled_tag_exactly_once():
    """Deliveries the task link gives back at once (no room in the byte budget) never enter
    the window; the ones around them are acked exactly once, however they settle."""
    rng = random.Random(7)
    for _ in range(200):
        count = rng.randint(1, 600)
        window, broker = AckWindow(), FakeBroker(range(1, count + 1))
        order = list(range(1, count + 1))
        rng.shuffle(order)
        rejected = set(order[: count // 10])
        for tag in range(1, count + 1):
            if tag in rejected:
                broker.reject(tag)
            else:
                window.delivered(tag)
        settled = [t for t in order if t not in rejected]
        while settled:
            take = rng.randint(1, 50)
            batch, settled = settled[:take], settled[take:]
            apply(window, broker, batch)
        apply(window, broker, ())
        assert sorted(broker.acked) == sorted(set(range(1, count + 1)) - rejected)
        assert not broker.outstanding
