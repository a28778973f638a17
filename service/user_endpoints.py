"""Tasks for a template-capable endpoint go to a user endpoint: one per endpoint, identity and
set of options (the SDK's ``user_endpoint_config``), with an id derived from the three, so the
same options land in the same user endpoint and different ones in different ones. The
service registers it (its queues and broker user) and, when it is not running, asks the
endpoint to start it with a start command carrying its credentials, as the hosted service
does.

A user endpoint nobody has submitted to, that has not reported and is owed no task for a
grace period (``--reclaim-user-endpoints-after``) is reclaimed: its queues, broker user and
record are deleted (Reclaimer); the next submit with its options registers it again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid

from ..protocol import commands
from .broker import Broker
from .routes.endpoints import is_online
from .routes.oauth import IDENTITY_NAMESPACE
from .store import Store

log = logging.getLogger(__name__)

USER_ENDPOINT_NAMESPACE = uuid.UUID("0c5f2b8e-7a1d-4e3b-9c6f-5d2a8b1e4f70")
# A start asked for this recently is on its way: asking again would change its broker password.
START_PENDING_S = 60.0


def user_endpoint_id(endpoint_id: str, owner: str, options: dict) -> str:
    key = json.dumps(options, sort_keys=True, separators=(",", ":"))
    return str(uuid.uuid5(USER_ENDPOINT_NAMESPACE, f"{endpoint_id}\n{owner}\n{key}"))


def route_to_user_endpoint(store: Store, broker: Broker, owner: str, manager, options: dict,
                           user_runtime: dict | None, grace_s: float) -> str:
    """The id of the user endpoint this submit's tasks go to, asked to start if need be."""
    uep_id = user_endpoint_id(manager.id, owner, options)
    name = f"uep.{manager.id[:8]}.{uep_id[:8]}"
    # Touched before anything of it is used: a reclaim of it under way finishes first.
    if not store.touch_user_endpoint(owner, uep_id):
        store.upsert_endpoint(owner, uep_id, name, None, False, None, manager.allowed_functions,
                              {"parent": manager.id, "user_opts": options})
        store.touch_user_endpoint(owner, uep_id)
    row = store.endpoint(owner, uep_id)
    started = (row.settings or {}).get("start_sent_at") or 0
    # Asked to start a moment ago and not heard from since: it is on its way.
    pending = time.time() - started < START_PENDING_S and (row.last_report or 0) < started
    if is_online(row, grace_s) or pending:
        return uep_id
    credentials = broker.queue_info(uep_id, broker.declare_endpoint(uep_id))
    credentials.pop("command_queue_info", None)  # a user endpoint takes its commands from its manager
    identity = str(uuid.uuid5(IDENTITY_NAMESPACE, owner))
    broker.send_command(manager.id, *commands.start_endpoint(name, credentials, options, user_runtime, [identity],
                                                             username=owner))
    store.update_endpoint_settings(owner, uep_id, {"start_sent_at": time.time()})
    return uep_id


class Reclaimer(threading.Thread):
    """Every so often, reclaims the user endpoints gone for longer than the grace period."""

    def __init__(self, store: Store, broker: Broker, grace_s: float):
        super().__init__(name="user-endpoint-reclaimer", daemon=True)
        self.store, self.broker, self.grace_s = store, broker, grace_s
        self.interval_s = min(300.0, max(1.0, grace_s / 4))
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            try:
                self.sweep()
            except Exception:  # the database or broker away for a while: the next sweep tries again
                log.exception("reclaiming gone user endpoints failed; trying again in %.0f s", self.interval_s)

    def sweep(self) -> int:
        cutoff = time.time() - self.grace_s
        reclaimed = 0
        for endpoint_id in self.store.stale_user_endpoints(cutoff):
            row = self.store.get_endpoint_row(endpoint_id)
            if row is None or is_online(row, self.grace_s):  # reports less often than the grace period
                continue
            if self.store.reclaim_user_endpoint(endpoint_id, cutoff, self.broker.delete_endpoint):
                reclaimed += 1
                log.info("reclaimed user endpoint %s (unused and silent for %.0f s, owed no task): its queues, "
                         "broker user and record", endpoint_id, self.grace_s)
        return reclaimed

    def stop(self) -> None:
        self.stopping.set()
