"""Idle shutdown, counted in heartbeat periods as the official endpoint counts it
(config ``idle_heartbeats_soft`` and ``idle_heartbeats_hard``):

- soft: once the endpoint has done some work and every task received has its result
  sent, that many heartbeats in a row without a task or result moving stop it;
- hard: that many heartbeats without a task or result moving stop it even with tasks
  outstanding (a worker gone for good never returns its task). At least soft + 1.

Both are off while ``idle_heartbeats_soft`` is 0 (the default: always on).
"""

from __future__ import annotations

import logging

import attrs

log = logging.getLogger(__name__)


@attrs.define
class IdleWatch:
    soft_limit: int = 0
    hard_limit: int = 5760
    period_s: float = 30.0
    soft: int = 0
    hard: int = 0
    last_received: int = 0
    last_sent: int = 0

    def heartbeat(self, received: int, sent: int) -> str | None:
        """Count one heartbeat period, given how many tasks were received and results sent
        so far; the reason to stop, when it is time."""
        if not self.soft_limit:
            return None
        moved = received != self.last_received or sent != self.last_sent
        self.last_received, self.last_sent = received, sent
        if moved:
            if self.soft or self.hard:
                log.info("active again: tasks moved since the last heartbeat")
            self.soft = self.hard = 0
            return None
        self.hard += 1
        hard_limit = max(self.soft_limit + 1, self.hard_limit)
        if received and sent >= received:
            self.soft += 1
            if self.soft == 1:
                log.info("idle (no task or result moving); stopping in %.0f s unless a task comes "
                         "(idle_heartbeats_soft: %d)", (self.soft_limit - 1) * self.period_s, self.soft_limit)
            if self.soft >= self.soft_limit:
                return (f"idle: no task for {self.soft} heartbeat periods of {self.period_s:g} s "
                        "(idle_heartbeats_soft)")
        elif self.hard > hard_limit:
            return (f"no task or result moved for {self.hard} heartbeat periods of {self.period_s:g} s, with "
                    f"{received - sent} task(s) outstanding (idle_heartbeats_hard)")
        elif self.hard == self.soft_limit + 1:
            log.info("possibly idle: no task or result moving; stopping in %.0f s (idle_heartbeats_hard)",
                     (hard_limit - self.hard) * self.period_s)
        return None
