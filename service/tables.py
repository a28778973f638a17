"""The service's tables, and bringing an older database up to them (SQLAlchemy Core)."""

from __future__ import annotations

import sqlalchemy as sa

# 1: first release. 2: client identities (clients), expiring tokens (tokens.expires).
# 3: endpoint tombstones (endpoints.deleted), results forwarded once (tasks.forwarded).
# 4: endpoint allow-lists and registration settings; public and group-shared functions.
# 5: when a user endpoint was last submitted to (endpoints.last_used), to reclaim gone ones.
SCHEMA_VERSION = 5

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
    # Deleted endpoints stay as tombstones: their id is never registered again by anyone
    # else, who would otherwise receive the tasks sent to the old owner's running daemon.
    sa.Column("deleted", sa.Float),
    sa.Column("allowed_functions", sa.JSON),  # None: any function; else a list of function ids
    sa.Column("settings", sa.JSON),  # admins, authentication_policy, subscription_uuid, high_assurance
    # Set for user endpoints only (those a template-capable endpoint starts): the last submit
    # routed to it. One unused, silent and owed no task for a grace period is reclaimed.
    sa.Column("last_used", sa.Float),
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
    sa.Column("public", sa.Boolean, nullable=False, default=False),  # runnable by every identity
    sa.Column("group_id", sa.String(36)),  # shared with a Globus group (kept; no groups here)
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
    # Set once the result is confirmed on the SDK's task group queue: a redelivered or
    # duplicated result is stored and forwarded once.
    sa.Column("forwarded", sa.Boolean, nullable=False, default=False),
)

PENDING = "waiting-for-ep"


class SchemaError(Exception):
    """The database holds a schema this service cannot use."""


# Any fixed number: the PostgreSQL advisory lock that replicas take to migrate one at a time.
MIGRATION_LOCK_KEY = 0x636F6D70


def migrate(engine: sa.Engine) -> None:
    """Create the tables, or bring an older schema up to this version (replicas one at a time)."""
    with engine.begin() as db:
        if db.dialect.name == "postgresql":
            # Replicas starting together: one creates and migrates, the others wait for it.
            db.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        metadata.create_all(db)
        found = db.execute(sa.select(schema_version.c.version)).scalar()
        if found is None:
            db.execute(schema_version.insert().values(version=SCHEMA_VERSION))
        elif found > SCHEMA_VERSION:
            raise SchemaError(f"database schema version {found} is newer than this service "
                              f"understands ({SCHEMA_VERSION}); upgrade compute-service")
        elif found < SCHEMA_VERSION:
            # create_all made the new tables; older ones need their new columns.
            _add_missing_column(db, "tokens", "expires", "FLOAT")
            _add_missing_column(db, "endpoints", "deleted", "FLOAT")
            # Results stored before version 3 were forwarded as they arrived.
            _add_missing_column(db, "tasks", "forwarded", "BOOLEAN NOT NULL DEFAULT TRUE")
            _add_missing_column(db, "endpoints", "allowed_functions", "JSON")
            _add_missing_column(db, "endpoints", "settings", "JSON")
            _add_missing_column(db, "functions", "public", "BOOLEAN NOT NULL DEFAULT FALSE")
            _add_missing_column(db, "functions", "group_id", "VARCHAR(36)")
            _add_missing_column(db, "endpoints", "last_used", "FLOAT")
            _date_user_endpoints(db)
            db.execute(schema_version.update().values(version=SCHEMA_VERSION))

def _date_user_endpoints(db) -> None:
    """User endpoints made before version 5 count as last used when last heard from."""
    rows = db.execute(sa.select(endpoints.c.id, endpoints.c.settings, endpoints.c.created, endpoints.c.last_report)
                      .where(endpoints.c.last_used.is_(None), endpoints.c.settings.is_not(None)))
    for row in rows.all():
        if isinstance(row.settings, dict) and row.settings.get("parent"):
            db.execute(endpoints.update().where(endpoints.c.id == row.id)
                       .values(last_used=max(row.created, row.last_report or 0)))

def _add_missing_column(db, table: str, column: str, definition: str) -> None:
    if column not in {c["name"] for c in sa.inspect(db).get_columns(table)}:
        db.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {definition}"))


def sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the result consumer write while request threads read.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
