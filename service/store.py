"""The service's state in SQL (SQLite by default, PostgreSQL by URL), through SQLAlchemy Core.

Every read and write takes the caller's identity, so one identity never reads or
changes another's endpoints, functions or tasks: what is not yours looks absent.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

# 1: first release. 2: client identities (clients), expiring tokens (tokens.expires).
SCHEMA_VERSION = 2

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version", metadata,
    sa.Column("version", sa.Integer, nullable=False),
)

tokens = sa.Table(
    "tokens", metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("identity", sa.String(256), nullable=False, index=True),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("expires", sa.Float),  # None: until revoked
)

clients = sa.Table(
    "clients", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("identity", sa.String(256), nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)

endpoints = sa.Table(
    "endpoints", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("owner", sa.String(256), nullable=False, index=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("display_name", sa.String(256)),
    sa.Column("public", sa.Boolean, nullable=False, default=False),
    sa.Column("meta", sa.JSON),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("last_report", sa.Float),
    sa.Column("report", sa.JSON),
    sa.Column("locked_until", sa.Float),
)

functions = sa.Table(
    "functions", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("owner", sa.String(256), nullable=False, index=True),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("meta", sa.JSON),
    sa.Column("created", sa.Float, nullable=False),
)

task_groups = sa.Table(
    "task_groups", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("owner", sa.String(256), nullable=False, index=True),
    sa.Column("created", sa.Float, nullable=False),
)

tasks = sa.Table(
    "tasks", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("owner", sa.String(256), nullable=False, index=True),
    sa.Column("endpoint_id", sa.String(36), nullable=False, index=True),
    sa.Column("function_id", sa.String(36), nullable=False),
    sa.Column("task_group_id", sa.String(36), nullable=False, index=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("result", sa.Text),
    sa.Column("exception", sa.Text),
    sa.Column("details", sa.JSON),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("completion_t", sa.String(32)),
)

PENDING = "waiting-for-ep"


class SchemaError(Exception):
    """The database holds a schema this service cannot use."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    def __init__(self, url: str):
        connect_args = {"check_same_thread": False, "timeout": 30} if url.startswith("sqlite") else {}
        self.engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._migrate()

    def _migrate(self) -> None:
        metadata.create_all(self.engine)
        with self.engine.begin() as db:
            found = db.execute(sa.select(schema_version.c.version)).scalar()
            if found is None:
                db.execute(schema_version.insert().values(version=SCHEMA_VERSION))
            elif found > SCHEMA_VERSION:
                raise SchemaError(f"database schema version {found} is newer than this service "
                                  f"understands ({SCHEMA_VERSION}); upgrade compute-service")
            elif found < SCHEMA_VERSION:
                if found < 2:  # create_all made the clients table; tokens needs its new column
                    db.execute(sa.text("ALTER TABLE tokens ADD COLUMN expires FLOAT"))
                db.execute(schema_version.update().values(version=SCHEMA_VERSION))

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
                        public: bool, meta: dict | None) -> None:
        values = dict(name=name, display_name=display_name, public=public, meta=meta)
        with self.engine.begin() as db:
            updated = db.execute(endpoints.update().where(endpoints.c.id == endpoint_id,
                                                          endpoints.c.owner == owner).values(**values))
            if updated.rowcount == 0:
                db.execute(endpoints.insert().values(id=endpoint_id, owner=owner, created=time.time(),
                                                     **values))

    def endpoint(self, owner: str, endpoint_id: str) -> Any:
        with self.engine.connect() as db:
            return db.execute(sa.select(endpoints).where(endpoints.c.id == endpoint_id,
                                                         endpoints.c.owner == owner)).first()

    def list_endpoints(self, owner: str) -> list[Any]:
        with self.engine.connect() as db:
            return list(db.execute(sa.select(endpoints).where(endpoints.c.owner == owner)
                                   .order_by(endpoints.c.created)))

    def delete_endpoint(self, owner: str, endpoint_id: str) -> bool:
        with self.engine.begin() as db:
            return db.execute(endpoints.delete().where(endpoints.c.id == endpoint_id,
                                                       endpoints.c.owner == owner)).rowcount > 0

    def lock_endpoint(self, owner: str, endpoint_id: str, until: float) -> bool:
        with self.engine.begin() as db:
            return db.execute(endpoints.update().where(endpoints.c.id == endpoint_id,
                                                       endpoints.c.owner == owner)
                              .values(locked_until=until)).rowcount > 0

    def record_status_report(self, endpoint_id: str, report: dict) -> None:
        with self.engine.begin() as db:
            db.execute(endpoints.update().where(endpoints.c.id == endpoint_id)
                       .values(last_report=time.time(), report=report))

    # ------------------------------------------------------------------ functions

    def create_function(self, owner: str, name: str, code: str, description: str | None,
                        meta: dict | None) -> str:
        function_id = str(uuid.uuid4())
        with self.engine.begin() as db:
            db.execute(functions.insert().values(id=function_id, owner=owner, name=name, code=code,
                                                 description=description, meta=meta,
                                                 created=time.time()))
        return function_id

    def functions_by_id(self, owner: str, function_ids: Iterable[str]) -> dict[str, Any]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(functions).where(functions.c.id.in_(list(function_ids)),
                                                         functions.c.owner == owner))
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

    def complete_tasks(self, outcomes: list[dict]) -> dict[str, str]:
        """Record results; return {task_id: task_group_id} of the tasks that were pending.

        A task already complete keeps its first result: a duplicate delivery changes nothing.
        """
        groups = {}
        with self.engine.begin() as db:
            for outcome in outcomes:
                row = db.execute(sa.select(tasks.c.task_group_id, tasks.c.status)
                                 .where(tasks.c.id == outcome["id"])).first()
                if row is None:
                    continue
                groups[outcome["id"]] = row.task_group_id
                if row.status in ("success", "failed"):
                    continue
                db.execute(tasks.update().where(tasks.c.id == outcome["id"])
                           .values(**{k: v for k, v in outcome.items() if k != "id"}))
        return groups


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the result consumer write while request threads read.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
