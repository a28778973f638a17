"""The service's state in SQL (SQLite by default, PostgreSQL by URL), through SQLAlchemy Core.

Every read and write takes the caller's identity, so one identity never reads or
changes another's endpoints, functions or tasks: what is not yours looks absent.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import sqlalchemy as sa

from .tables import (  # noqa: F401 - SCHEMA_VERSION and SchemaError are part of the store's interface
    PENDING,
    SCHEMA_VERSION,
    SchemaError,
    clients,
    endpoints,
    functions,
    migrate,
    sqlite_pragmas,
    task_groups,
    tasks,
    tokens,
)

log = logging.getLogger(__name__)

# What a result sets on its task's row.
RESULT_COLUMNS = ("status", "result", "exception", "details", "completion_t")
# Task ids per SELECT ... IN (...): well under every database's limit on bound parameters.
LOOKUP_CHUNK = 500


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class EndpointIdTaken(Exception):
    """Another identity registered this endpoint id first."""


class Store:
    """The service's records (endpoints, functions, tasks and their results, tokens) in one
    SQL database, SQLite or PostgreSQL, through SQLAlchemy Core. Each method is one short
    transaction; a task's result is kept once (the first to arrive), which is what makes
    the service the idempotent consumer of results."""

    def __init__(self, url: str):
        connect_args = {"check_same_thread": False, "timeout": 30} if url.startswith("sqlite") else {}
        self.engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", sqlite_pragmas)
        migrate(self.engine)

    # ------------------------------------------------------------------ identities

    def create_token(self, identity: str, lifetime_s: float | None = None) -> str:
        token = secrets.token_urlsafe(32)
        now = time.time()
        with self.engine.begin() as db:
            db.execute(tokens.insert().values(token_sha256=hash_token(token), identity=identity, created=now,
                                              expires=now + lifetime_s if lifetime_s else None))
        return token

    def identity_for_token(self, token: str) -> str | None:
        with self.engine.connect() as db:
            row = db.execute(sa.select(tokens.c.token_sha256, tokens.c.identity, tokens.c.expires)
                             .where(tokens.c.token_sha256 == hash_token(token))).first()
        # The lookup is by hash; compare the digest again in constant time all the same.
        if row and secrets.compare_digest(row.token_sha256, hash_token(token)):
            if row.expires is None or row.expires > time.time():
                return row.identity
        return None

    def list_tokens(self, identity: str | None = None) -> list[Any]:
        """Tokens by the first 12 hex digits of their hash (the token itself is never stored)."""
        query = sa.select(tokens).order_by(tokens.c.created)
        if identity is not None:
            query = query.where(tokens.c.identity == identity)
        with self.engine.connect() as db:
            return list(db.execute(query))

    def revoke_token(self, token_id: str) -> int:
        """Revoke the tokens whose hash starts with token_id (at least 12 hex digits)."""
        if len(token_id) < 12 or any(c not in "0123456789abcdef" for c in token_id):
            raise ValueError("a token id is the first 12 (or more) hex digits that `token list` shows")
        with self.engine.begin() as db:
            return db.execute(tokens.delete().where(tokens.c.token_sha256.startswith(token_id))).rowcount

    def create_client(self, identity: str) -> tuple[str, str]:
        """A client identity: (client id, secret); the secret is stored hashed."""
        client_id, secret = str(uuid.uuid4()), secrets.token_urlsafe(32)
        with self.engine.begin() as db:
            db.execute(clients.insert().values(id=client_id, secret_sha256=hash_token(secret), identity=identity,
                                               created=time.time()))
        return client_id, secret

    def identity_for_client(self, client_id: str, secret: str) -> str | None:
        with self.engine.connect() as db:
            row = db.execute(sa.select(clients).where(clients.c.id == client_id)).first()
        if row and secrets.compare_digest(row.secret_sha256, hash_token(secret)):
            return row.identity
        return None

    # ------------------------------------------------------------------ endpoints

    def get_endpoint_row(self, endpoint_id: str) -> Any:
        """The row whoever owns it (for ownership checks); None when absent."""
        with self.engine.connect() as db:
            return db.execute(sa.select(endpoints).where(endpoints.c.id == endpoint_id)).first()

    def upsert_endpoint(self, owner: str, endpoint_id: str, name: str, display_name: str | None,
                        public: bool, meta: dict | None, allowed_functions: list[str] | None = None,
                        settings: dict | None = None) -> None:
        values = dict(name=name, display_name=display_name, public=public, meta=meta, deleted=None,
                      allowed_functions=allowed_functions, settings=settings)
        for attempt in (1, 2):
            try:
                with self.engine.begin() as db:
                    updated = db.execute(endpoints.update().where(endpoints.c.id == endpoint_id,
                                                                  endpoints.c.owner == owner).values(**values))
                    if updated.rowcount == 0:
                        db.execute(endpoints.insert().values(id=endpoint_id, owner=owner, created=time.time(),
                                                             **values))
                return
            except sa.exc.IntegrityError:
                # Another replica inserted this id between our update and insert: the second
                # try updates that row (or fails again when another owner holds the id).
                if attempt == 2:
                    raise EndpointIdTaken(endpoint_id) from None

    def update_endpoint_settings(self, owner: str, endpoint_id: str, changes: dict) -> None:
        with self.engine.begin() as db:
            row = db.execute(sa.select(endpoints.c.settings).where(endpoints.c.id == endpoint_id,
                                                                    endpoints.c.owner == owner)).first()
            if row is not None:
                db.execute(endpoints.update().where(endpoints.c.id == endpoint_id, endpoints.c.owner == owner)
                           .values(settings={**(row.settings or {}), **changes}))

    def endpoint(self, owner: str, endpoint_id: str) -> Any:
        with self.engine.connect() as db:
            return db.execute(sa.select(endpoints).where(endpoints.c.id == endpoint_id, endpoints.c.owner == owner,
                                                         endpoints.c.deleted.is_(None))).first()

    def list_endpoints(self, owner: str, public_too: bool = False) -> list[Any]:
        """The owner's endpoints; with public_too, every identity's public ones as well."""
        visible = sa.or_(endpoints.c.owner == owner, endpoints.c.public.is_(True)) if public_too \
            else endpoints.c.owner == owner
        with self.engine.connect() as db:
            return list(db.execute(sa.select(endpoints).where(visible, endpoints.c.deleted.is_(None))
                                   .order_by(endpoints.c.created)))

    def delete_endpoint(self, owner: str, endpoint_id: str, reason: str) -> int:
        """Leave a tombstone and fail the endpoint's pending tasks with reason; how many failed."""
        now = time.time()
        with self.engine.begin() as db:
            db.execute(endpoints.update().where(endpoints.c.id == endpoint_id, endpoints.c.owner == owner)
                       .values(deleted=now, report=None, last_report=None))
            # Only the owner's tasks: the store keeps identities apart even if a caller did not.
            return db.execute(tasks.update().where(tasks.c.endpoint_id == endpoint_id, tasks.c.owner == owner,
                                                   tasks.c.status == PENDING)
                              .values(status="failed", exception=reason, completion_t=str(now))).rowcount

    def lock_endpoint(self, owner: str, endpoint_id: str, until: float) -> bool:
        with self.engine.begin() as db:
            return db.execute(endpoints.update().where(endpoints.c.id == endpoint_id,
                                                       endpoints.c.owner == owner)
                              .values(locked_until=until)).rowcount > 0

    def touch_user_endpoint(self, owner: str, endpoint_id: str) -> bool:
        """A submit is routed to this user endpoint now; False when there is no such record.
        Waits while a reclaim of it is under way (reclaim_user_endpoint), and then finds none."""
        with self.engine.begin() as db:
            return db.execute(endpoints.update().where(endpoints.c.id == endpoint_id, endpoints.c.owner == owner,
                                                       endpoints.c.deleted.is_(None))
                              .values(last_used=time.time())).rowcount > 0

    def stale_user_endpoints(self, cutoff: float) -> list[str]:
        """User endpoints neither submitted to nor heard from since cutoff."""
        with self.engine.connect() as db:
            return list(db.execute(sa.select(endpoints.c.id).where(*_stale(cutoff))).scalars())

    def reclaim_user_endpoint(self, endpoint_id: str, cutoff: float, release: Callable[[str], None]) -> bool:
        """Delete the record of a user endpoint still stale at cutoff and owed no task, and call
        release(endpoint_id) (its queues and broker user) before the deletion commits: a submit
        to it meanwhile waits on the row (touch_user_endpoint), then registers it anew, after
        release. release raising keeps the record for the next try."""
        with self.engine.begin() as db:
            owed = sa.exists().where(tasks.c.endpoint_id == endpoint_id, tasks.c.status == PENDING)
            deleted = db.execute(endpoints.delete().where(endpoints.c.id == endpoint_id, *_stale(cutoff),
                                                          ~owed)).rowcount
            if deleted:
                release(endpoint_id)
            return deleted > 0

    def record_status_report(self, endpoint_id: str, report: dict) -> bool:
        """Store a live endpoint's report; False when there is no such (undeleted) endpoint."""
        with self.engine.begin() as db:
            return db.execute(endpoints.update().where(endpoints.c.id == endpoint_id, endpoints.c.deleted.is_(None))
                              .values(last_report=time.time(), report=report)).rowcount > 0

    def fail_pending_tasks(self, endpoint_id: str, reason: str) -> int:
        """Fail the tasks still waiting for this endpoint (it said it cannot start); how many."""
        now = time.time()
        with self.engine.begin() as db:
            return db.execute(tasks.update().where(tasks.c.endpoint_id == endpoint_id, tasks.c.status == PENDING)
                              .values(status="failed", exception=reason, completion_t=str(now))).rowcount

    # ------------------------------------------------------------------ functions

    def create_function(self, owner: str, name: str, code: str, description: str | None,
                        meta: dict | None, public: bool = False, group_id: str | None = None) -> str:
        function_id = str(uuid.uuid4())
        with self.engine.begin() as db:
            db.execute(functions.insert().values(id=function_id, owner=owner, name=name, code=code,
                                                 description=description, meta=meta, public=public,
                                                 group_id=group_id, created=time.time()))
        return function_id

    def functions_by_id(self, owner: str, function_ids: Iterable[str]) -> dict[str, Any]:
        """The functions the caller may run: its own, and every identity's public ones."""
        with self.engine.connect() as db:
            rows = db.execute(sa.select(functions).where(functions.c.id.in_(list(function_ids)),
                                                         sa.or_(functions.c.owner == owner,
                                                                functions.c.public.is_(True))))
            return {row.id: row for row in rows}

    def delete_function(self, owner: str, function_id: str) -> bool:
        with self.engine.begin() as db:
            return db.execute(functions.delete().where(functions.c.id == function_id,
                                                       functions.c.owner == owner)).rowcount > 0

    # ------------------------------------------------------------------ tasks

    def ensure_task_group(self, owner: str, task_group_id: str | None) -> str | None:
        """The group's id (new when None); None when the id belongs to someone else."""
        with self.engine.begin() as db:
            if task_group_id is not None:
                row = db.execute(sa.select(task_groups.c.owner)
                                 .where(task_groups.c.id == task_group_id)).first()
                if row is not None:
                    return task_group_id if row.owner == owner else None
            task_group_id = task_group_id or str(uuid.uuid4())
            db.execute(task_groups.insert().values(id=task_group_id, owner=owner, created=time.time()))
            return task_group_id

    def create_tasks(self, owner: str, endpoint_id: str, task_group_id: str,
                     function_of_task: dict[str, str]) -> None:
        now = time.time()
        rows = [dict(id=task_id, owner=owner, endpoint_id=endpoint_id, function_id=function_id,
                     task_group_id=task_group_id, status=PENDING, created=now)
                for task_id, function_id in function_of_task.items()]
        if rows:
            with self.engine.begin() as db:
                db.execute(tasks.insert(), rows)

    def tasks_by_id(self, owner: str, task_ids: Iterable[str]) -> dict[str, Any]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(tasks).where(tasks.c.id.in_(list(task_ids)),
                                                     tasks.c.owner == owner))
            return {row.id: row for row in rows}

    def task_group_tasks(self, owner: str, task_group_id: str) -> list[str] | None:
        with self.engine.connect() as db:
            group = db.execute(sa.select(task_groups.c.id).where(task_groups.c.id == task_group_id,
                                                                 task_groups.c.owner == owner)).first()
            if group is None:
                return None
            return list(db.execute(sa.select(tasks.c.id).where(tasks.c.task_group_id == task_group_id)
                                   .order_by(tasks.c.created)).scalars())

    def complete_tasks(self, outcomes: list[dict]) -> list[ResultFate]:
        """Record results, each from the endpoint named in its "endpoint_id"; say what became
        of each, in order. A task already complete keeps its first result: a duplicate (in
        this batch or later) changes nothing, and one from another endpoint is refused. One
        transaction for the batch; if it fails, one per result, so that one bad row cannot
        hold back the others (it is reported with an error)."""
        try:
            with self.engine.begin() as db:
                return self._complete(db, outcomes)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("storing a batch of %d results failed (%s); storing them one by one", len(outcomes), exc)
        fates = []
        for outcome in outcomes:
            try:
                with self.engine.begin() as db:
                    fates.extend(self._complete(db, [outcome]))
            except sa.exc.SQLAlchemyError as exc:
                fates.append(ResultFate(error=f"the store refused it: {exc}"))
        return fates

    @staticmethod
    def _complete(db, outcomes: list[dict]) -> list[ResultFate]:
        """One SELECT and one UPDATE (executemany) for the whole batch."""
        # FOR UPDATE (PostgreSQL): of two replicas storing copies of one result at once, the
        # second waits for the first, then sees the task complete. Rows are locked in task id
        # order, so replicas' batches cannot deadlock on each other.
        ids = sorted({o["id"] for o in outcomes})
        rows: dict[str, Any] = {}
        for start in range(0, len(ids), LOOKUP_CHUNK):
            rows.update((row.id, row) for row in db.execute(
                sa.select(tasks.c.id, tasks.c.task_group_id, tasks.c.owner, tasks.c.status, tasks.c.endpoint_id,
                          tasks.c.forwarded).where(tasks.c.id.in_(ids[start:start + LOOKUP_CHUNK]))
                .order_by(tasks.c.id).with_for_update()))
        fates, updates, stored_now = [], [], set()
        for outcome in outcomes:
            row = rows.get(outcome["id"])
            if row is None:
                fates.append(ResultFate(error="no such task"))
                continue
            sender = outcome.get("endpoint_id")
            if sender is not None and sender != row.endpoint_id:
                fates.append(ResultFate(error=f"sent by endpoint {sender}, but the task belongs to another endpoint"))
                continue
            first = row.status == PENDING and row.id not in stored_now
            if first:  # the first copy, here or in any batch, is the task's result
                stored_now.add(row.id)
                updates.append({"task": row.id, **{column: outcome.get(column) for column in RESULT_COLUMNS}})
            # A stored result not yet marked forwarded is forwarded again only from a redelivered
            # message: the broker gives one back only when whoever had it never acknowledged it,
            # and so never forwarded it (a batch's forwards and acks commit together). A fresh
            # copy (the endpoint published it twice) may be in another replica's hands right now.
            fates.append(ResultFate(task_group_id=row.task_group_id, owner=row.owner,
                                    forward=first or (not row.forwarded and bool(outcome.get("redelivered")))))
        if updates:
            db.execute(tasks.update().where(tasks.c.id == sa.bindparam("task"))
                       .values(forwarded=False, **{column: sa.bindparam(column) for column in RESULT_COLUMNS}),
                       updates)
        return fates

    def mark_forwarded(self, task_ids: Iterable[str]) -> None:
        task_ids = list(task_ids)
        if task_ids:
            with self.engine.begin() as db:
                db.execute(tasks.update().where(tasks.c.id.in_(task_ids)).values(forwarded=True))


@attrs.frozen
class ResultFate:
    """What storing one result came to: refused (error), or stored (now or before) and still
    to be forwarded to its owner's task group queue, or already forwarded."""

    task_group_id: str | None = None
    owner: str | None = None
    forward: bool = False
    error: str | None = None


def _stale(cutoff: float) -> tuple:
    return (endpoints.c.last_used < cutoff, endpoints.c.deleted.is_(None),
            sa.or_(endpoints.c.last_report.is_(None), endpoints.c.last_report < cutoff))
