"""Alembic glue shared by every service: the core tables and running migrations on start."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.locks import LockSpace, xact_lock_sql
from shared.tables import OUTBOX_NOTIFY_DDL, TRACE_HEADERS_DDL, core_metadata

log = logging.getLogger(__name__)

#: SQLSTATEs that mean "the database is not there *yet*": it does not exist (3D000), the role or
#: its password is not set up yet (28000, 28P01), the server is starting or shutting down (57P03,
#: 57P01), it is full (53300), or the connection failed (class 08). What CloudNativePG shows while
#: it bootstraps a cluster, and PostgreSQL while it starts.
_NOT_YET = {"3D000", "28000", "28P01", "57P01", "57P03", "53300"}


def uuid_column(name: str, *, primary_key: bool = False, nullable: bool = True) -> sa.Column[object]:
    """A UUID column for migrations (kept in one place so every service writes them alike)."""
    from sqlalchemy.dialects.postgresql import UUID

    return sa.Column(name, UUID(as_uuid=True), primary_key=primary_key, nullable=nullable and not primary_key)


def create_core_tables(bind: sa.engine.Connection) -> None:
    """Called from each service's first migration, so the core schema is written once."""
    core_metadata.create_all(bind)
    for ddl in OUTBOX_NOTIFY_DDL:
        bind.execute(sa.text(ddl))


def add_trace_header_columns() -> None:
    """``events.traceparent``/``tracestate`` and the trigger filling them (shared/tables.py), for
    Debezium's headers. Each service's revision after its trace-context one calls it; a database
    made by a later first revision already has the columns (``create_core_tables`` writes the
    live table), hence IF NOT EXISTS, and the trigger is (re)made either way."""
    from alembic import op

    op.execute("ALTER TABLE events ADD COLUMN IF NOT EXISTS traceparent text")
    op.execute("ALTER TABLE events ADD COLUMN IF NOT EXISTS tracestate text")
    for ddl in TRACE_HEADERS_DDL:
        op.execute(ddl)
    # No backfill: an UPDATE of events would reach a running connector, whose outbox router
    # treats any operation but an insert as fatal (events are append-only). An event appended
    # before this revision and captured after it starts a new trace at its consumer.


def drop_trace_header_columns() -> None:
    from alembic import op

    op.execute("DROP TRIGGER IF EXISTS events_trace_headers ON events")
    op.execute("DROP FUNCTION IF EXISTS events_trace_headers()")
    op.execute("ALTER TABLE events DROP COLUMN IF EXISTS tracestate")
    op.execute("ALTER TABLE events DROP COLUMN IF EXISTS traceparent")


def create_consumer_tables(bind: sa.engine.Connection) -> None:
    """The consumer-order tables (``shared.tables.consumer_metadata``), written out so that this
    revision's schema never changes with later code. Each service's second migration calls it."""
    from sqlalchemy.dialects.postgresql import JSONB

    op_meta = sa.MetaData()
    sa.Table(
        "consumer_streams",
        op_meta,
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("stream_id", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    sa.Table(
        "consumer_parked",
        op_meta,
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("stream_id", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("envelope", JSONB, nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op_meta.create_all(bind)


def forget_parked_of_unfollowed_streams(
    consumer: str, follows: Sequence[str], bind: sa.engine.Connection | None = None
) -> None:
    """For a consumer that now follows only ``follows`` (``InboxConsumer(follows=...)``): drop its
    parked events of other streams. Their predecessors are now passed over without a look at the
    park, so they could never be released, and a row that stays reads as a dead letter to
    replay. (Its old inbox and position rows of those streams stay: harmless, and a position row
    does not say its stream's type.) Each revision writes its list out rather than importing the
    service's: what a revision does must not change with later code."""
    from alembic import op

    (bind or op.get_bind()).execute(
        sa.text(
            "DELETE FROM consumer_parked WHERE consumer = :consumer "
            "AND NOT (envelope->>'aggregate_type' = ANY(CAST(:follows AS text[])))"
        ),
        {"consumer": consumer, "follows": list(follows)},
    )


def drop_consumer_tables(bind: sa.engine.Connection) -> None:
    bind.execute(sa.text("DROP TABLE IF EXISTS consumer_parked, consumer_streams"))


def create_outbox_held(bind: sa.engine.Connection) -> None:
    """For databases made before ``outbox_held`` existed; a new database already has it (the
    first migration creates the core tables as they are now)."""
    from shared.tables import outbox_held

    outbox_held.create(bind, checkfirst=True)


def drop_core_tables(bind: sa.engine.Connection) -> None:
    bind.execute(sa.text("DROP FUNCTION IF EXISTS outbox_notify() CASCADE"))
    core_metadata.drop_all(bind)


def alembic_config(script_location: Path, database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    # Alembic's options go through configparser interpolation, where "%" starts a reference: a
    # URL-encoded password ("%40" for "@") or a literal "%" would crash with "invalid
    # interpolation syntax". Doubled, configparser hands back the URL unchanged.
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def _not_yet(exc: BaseException) -> str | None:
    """Why ``exc`` means "the database is not reachable yet" (for the log), or None."""
    if isinstance(exc, OSError | TimeoutError):
        return type(exc).__name__
    seen: BaseException | None = exc
    while seen is not None:  # SQLAlchemy wraps the driver's error, which carries the SQLSTATE
        code = str(getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None) or "")
        if code in _NOT_YET or code.startswith("08"):
            return f"{type(seen).__name__} (SQLSTATE {code})"
        if isinstance(seen, OSError | TimeoutError):
            return type(seen).__name__
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


async def wait_for_database(engine: AsyncEngine, wait_seconds: float) -> None:
    """Connect, retrying for up to ``wait_seconds`` while the database is not there yet.

    A pod that starts before its database (CloudNativePG still bootstrapping) waits here, logging
    every attempt, instead of crash-looping with growing back-off. Errors that waiting cannot fix
    (a bad URL, a migration failing) are raised at once; so is the last error once time is up.
    """
    deadline = time.monotonic() + max(wait_seconds, 0.0)
    delay, attempt = 0.5, 0
    while True:
        attempt += 1
        try:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
            if attempt > 1:
                log.info("database reachable after %d attempt(s)", attempt)
            return
        except Exception as exc:
            reason = _not_yet(exc)
            left = deadline - time.monotonic()
            if reason is None or left <= 0:
                if reason is not None:
                    log.error("database still not reachable after %.0fs: %s; giving up", wait_seconds, reason)
                raise
            pause = min(delay, left)
            # Never the URL: it holds the password.
            log.warning(
                "database not reachable yet (%s); attempt %d, retrying in %.1fs (%.0fs left)",
                reason,
                attempt,
                pause,
                left,
            )
            await asyncio.sleep(pause)
            delay = min(delay * 2, 5.0)


async def upgrade_to_head(script_location: Path, database_url: str, *, wait_seconds: float = 0.0) -> None:
    """Apply a service's migrations. Advisory-locked so two replicas starting together are safe.

    ``wait_seconds``: how long to wait for a database that is not reachable yet (see
    ``wait_for_database``); services pass ``UNION_DB_WAIT_SECONDS``.
    """
    engine = create_async_engine(database_url)
    try:
        await wait_for_database(engine, wait_seconds)
        async with engine.begin() as conn:
            await conn.execute(sa.text(xact_lock_sql(LockSpace.MIGRATIONS)), {"name": "alembic"})

            def run(sync_conn: sa.engine.Connection) -> None:
                cfg = alembic_config(script_location, database_url)
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, "head")

            await conn.run_sync(run)
    finally:
        await engine.dispose()


def run_env(config: Config, target_metadata: sa.MetaData | None = None) -> None:
    """Body of every service's ``migrations/env.py``: online migrations on the given connection."""
    from alembic import context

    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through shared.migrations.upgrade_to_head")
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
