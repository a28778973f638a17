"""What the service accepts from endpoints: results and status reports, each checked on its
own, so that one bad or forged message is refused (and dead-lettered) while the rest of its
batch is stored."""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from ..protocol import messages
from .broker import queue_prefix
from .result_consumer import Delivery, Handled
from .store import Store

log = logging.getLogger(__name__)

MAX_REPORT_BYTES = 64 * 1024
MAX_REPORT_DEPTH = 8
MAX_REPORT_NUMBER = 1e15
MAX_HEARTBEAT_PERIOD_S = 86400


class Refused(ValueError):
    """A message the service will not store; str() is the reason."""


class ResultRecorder:
    """The result consumer's handler: stores results and status reports, and says which
    results go on to their owner's task group queue."""

    def __init__(self, store: Store):
        self.store = store

    def handle(self, batch: list[Delivery]) -> Handled:
        handled = Handled()
        outcomes: list[tuple[int, dict]] = []
        for index, delivery in enumerate(batch):
            try:
                outcome = self._one(delivery)
            except Refused as exc:
                handled.refused[index] = str(exc)
            except Exception as exc:  # whatever a body can do to a decoder must not stop the others
                handled.refused[index] = f"cannot be handled: {type(exc).__name__}: {str(exc)[:200]}"
            else:
                if outcome is not None:
                    outcomes.append((index, outcome))
        if not outcomes:
            return handled
        # Every result goes to the store, the batch's duplicates too: a forged one ahead of the
        # real one must be refused there, not taken as the task's one result of this batch.
        fates = self.store.complete_tasks([outcome for _, outcome in outcomes])
        forwarding: set[str] = set()
        for (index, outcome), fate in zip(outcomes, fates, strict=True):
            task_id = outcome["id"]
            if fate.error:
                handled.refused[index] = f"result for task {task_id}: {fate.error}"
            elif fate.forward and fate.owner is not None and task_id not in forwarding:
                forwarding.add(task_id)  # once, however many copies this batch holds
                handled.forwards.append((f"{queue_prefix(fate.owner)}{fate.task_group_id}", index, task_id))
        return handled

    def forwarded(self, task_ids: list[str]) -> None:
        self.store.mark_forwarded(task_ids)

    def _one(self, delivery: Delivery) -> dict | None:
        try:
            message = messages.unpack(delivery.body)
        except messages.MessageError as exc:
            raise Refused(f"undecodable: {exc}") from None
        if isinstance(message, messages.EPStatusReport):
            endpoint_id = str(message.endpoint_id)
            if delivery.sender is not None and delivery.sender != endpoint_id:
                raise Refused(f"a status report for endpoint {endpoint_id} sent as endpoint {delivery.sender}")
            report = checked_report(message.global_state)
            if not self.store.record_status_report(endpoint_id, report):
                raise Refused(f"a status report for endpoint {endpoint_id}, which is not registered")
            # It could not start, and says why: the official's notice says only "error" (and its
            # heartbeat_period); ours says "active": false too.
            if report.get("error") and report.get("active") is not True:
                failed = self.store.fail_pending_tasks(endpoint_id, f"The endpoint could not start: {report['error']}")
                log.info("endpoint %s could not start; %d waiting task(s) failed", endpoint_id, failed)
            return None
        if isinstance(message, messages.Result):
            if not isinstance(message.data, str):
                raise Refused("a result whose data is not text")
            failed = message.is_error
            return {"id": str(message.task_id), "endpoint_id": delivery.sender,
                    "status": "failed" if failed else "success",
                    "result": None if failed else message.data, "exception": message.data if failed else None,
                    "details": checked_report(message.details or {}), "completion_t": str(time.time()),
                    "redelivered": delivery.redelivered}
        raise Refused(f"a {message.message_type} message has no place on the {delivery.queue} queue")


def checked_report(report: Any) -> dict:
    """A status report (or result details) fit to store and to show: a mapping, small, not deep,
    its numbers finite and bounded, its heartbeat period a sensible number of seconds."""
    if not isinstance(report, dict):
        raise Refused(f"a report must be a mapping, got {type(report).__name__}")
    _check_values(report, 0)
    if len(json.dumps(report)) > MAX_REPORT_BYTES:
        raise Refused(f"a report over {MAX_REPORT_BYTES} bytes")
    period = report.get("heartbeat_period")
    if period is not None and not (isinstance(period, (int, float)) and not isinstance(period, bool)
                                   and 0 < period <= MAX_HEARTBEAT_PERIOD_S):
        raise Refused(f"heartbeat_period must be a number of seconds from 0 to {MAX_HEARTBEAT_PERIOD_S}, "
                      f"got {period!r}")
    if "active" in report and not isinstance(report["active"], bool):
        raise Refused(f"active must be true or false, got {report['active']!r}")
    return report


def _check_values(value: Any, depth: int) -> None:
    if depth > MAX_REPORT_DEPTH:
        raise Refused(f"a report nested deeper than {MAX_REPORT_DEPTH} levels")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        if not (math.isfinite(value) and abs(value) <= MAX_REPORT_NUMBER):
            raise Refused(f"a report number out of range: {str(value)[:40]}")
        return
    if isinstance(value, dict):
        for item in value.values():
            _check_values(item, depth + 1)
        return
    if isinstance(value, list):
        for item in value:
            _check_values(item, depth + 1)
        return
    raise Refused(f"a report value of type {type(value).__name__}")
