"""Alembic glue shared by every service: the core tables and running migrations on start."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

from shared.locks import LockSpace, xact_lock_sql
from shared.tables import OUTBOX_NOTIFY_DDL, core_metadata


def uuid_column(name: str, *, primary_key: bool = False, nullable: bool = True) -> sa.Column[object]:
    """A UUID column for migrations (kept in one place so every service writes them alike)."""
    from sqlalchemy.dialects.postgresql import UUID

    return sa.Column(name, UUID(as_uuid=True), primary_key=primary_key, nullable=nullable and not primary_key)


def create_core_tables(bind: sa.engine.Connection) -> None:
    """Called from each service's first migration, so the core schema is written once."""
    core_metadata.create_all(bind)
    for ddl in OUTBOX_NOTIFY_DDL:
        bind.execute(sa.text(ddl))


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
    cfg.set_main_option("sqlalchemy.url", database_url)
    return cfg


async def upgrade_to_head(script_location: Path, database_url: str) -> None:
    """Apply a service's migrations. Advisory-locked so two replicas starting together are safe."""
    engine = create_async_engine(database_url)
    try:
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
