"""The contenders of the append workloads: ours (UnitOfWork + EventStore), raw asyncpg writing
the very same rows, and the eventsourcing library's PostgreSQL recorder."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.harness import ES_TOPIC, AsyncOp, Counter, SyncOp, registry
from shared.eventstore import EventStore
from shared.tables import events, outbox
from shared.unit_of_work import UnitOfWork

# --------------------------------------------------------------------------- ours


class Ours:
    """The production path: a UnitOfWork per command (pool checkout, BEGIN, append, COMMIT)."""

    def __init__(self, engine: AsyncEngine, note: str, base: int = 0) -> None:
        self.engine = engine
        self.store = EventStore("bench-core", registry)
        self.note = note
        self.base = base  # positions up to this are the prebuilt store (--store-events), kept

    def append_only(self, per_command: int) -> AsyncOp:
        """The aggregate is already in memory (its version is known): build events, append, commit."""

        async def op(stream: str, version: int) -> None:
            agg = Counter(stream)
            agg.version = version
            for _ in range(per_command):
                agg.count(1, self.note)
            async with UnitOfWork(self.engine, self.store) as uow:
                await uow.save(agg)
                await uow.commit()

        return op

    def load_decide_append(self) -> AsyncOp:
        async def op(stream: str, _version: int) -> None:
            async with UnitOfWork(self.engine, self.store) as uow:
                agg = await uow.load(Counter, stream)
                agg.count(1, self.note)
                await uow.save(agg)
                await uow.commit()

        return op

    async def reset(self) -> None:
        async with self.engine.begin() as conn:
            for statement in reset_statements(self.base):
                await conn.execute(sa.text(statement))

    async def stored(self) -> int:
        async with self.engine.connect() as conn:
            return await _stored_rows(conn, self.base)


def reset_statements(base: int) -> list[str]:
    """Empty the tables between runs; with a prebuilt store, only what the runs added."""
    if not base:
        return ["TRUNCATE events, outbox RESTART IDENTITY"]
    return ["DELETE FROM outbox", f"DELETE FROM events WHERE position > {int(base)}"]


async def _stored_rows(conn: Any, base: int) -> int:
    n_events = await conn.scalar(
        sa.select(sa.func.count()).select_from(events).where(events.c.position > base)
    )
    n_outbox = await conn.scalar(sa.select(sa.func.count()).select_from(outbox))
    if n_events != n_outbox:
        raise RuntimeError(f"events ({n_events}) and outbox ({n_outbox}) disagree")
    return int(n_events or 0)


# --------------------------------------------------------------------------- raw asyncpg

_EVENT_COLUMNS = (
    "event_id, stream_type, stream_id, version, event_type, schema_version, "
    "occurred_at, correlation_id, causation_id, data"
)
RAW_INSERT_ONE = f"""
WITH inserted AS (
    INSERT INTO events ({_EVENT_COLUMNS})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    RETURNING position
)
INSERT INTO outbox (position) SELECT position FROM inserted RETURNING position
"""
RAW_INSERT_MANY = f"""
WITH inserted AS (
    INSERT INTO events ({_EVENT_COLUMNS})
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], $6::int[],
                         $7::timestamptz[], $8::uuid[], $9::uuid[], $10::jsonb[])
    RETURNING position
)
INSERT INTO outbox (position) SELECT position FROM inserted RETURNING position
"""
RAW_SELECT_STREAM = "SELECT * FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version"


class Raw:
    """Plain asyncpg on one connection: the same rows, one explicit transaction per command."""

    def __init__(
        self, conn: asyncpg.Connection, note: str, base: int = 0, pool: asyncpg.Pool | None = None
    ) -> None:
        self.conn = conn
        self.note = note
        self.base = base
        self.pool = pool  # for the concurrent workload: one connection per client

    def append_only_pooled(self, per_command: int) -> AsyncOp:
        """As ``append_only``, each command on a connection of the pool (concurrent clients)."""
        pool = self.pool
        if pool is None:
            raise RuntimeError("Raw was built without a pool")

        async def op(stream: str, version: int) -> None:
            columns = list(zip(*self._rows(stream, version, per_command), strict=True))
            async with pool.acquire() as conn, conn.transaction():
                if per_command == 1:
                    await conn.fetch(RAW_INSERT_ONE, *[c[0] for c in columns])
                else:
                    await conn.fetch(RAW_INSERT_MANY, *columns)

        return op

    def _rows(self, stream: str, version: int, count: int) -> list[tuple[Any, ...]]:
        now = datetime.now(UTC)
        correlation_id = uuid.uuid4()
        return [
            (
                uuid.uuid4(),
                "Counter",
                stream,
                version + i + 1,
                "Counted",
                1,
                now,
                correlation_id,
                None,
                json.dumps({"n": 1, "note": self.note}),
            )
            for i in range(count)
        ]

    def append_only(self, per_command: int) -> AsyncOp:
        conn = self.conn
        if per_command == 1:

            async def one(stream: str, version: int) -> None:
                (row,) = self._rows(stream, version, 1)
                async with conn.transaction():
                    await conn.fetch(RAW_INSERT_ONE, *row)

            return one

        async def many(stream: str, version: int) -> None:
            columns = list(zip(*self._rows(stream, version, per_command), strict=True))
            async with conn.transaction():
                await conn.fetch(RAW_INSERT_MANY, *columns)

        return many

    def load_decide_append(self) -> AsyncOp:
        conn = self.conn

        async def op(stream: str, _version: int) -> None:
            async with conn.transaction():
                history = await conn.fetch(RAW_SELECT_STREAM, stream, 0)
                total, version = 0, 0
                for row in history:
                    total += json.loads(row["data"])["n"]
                    version = row["version"]
                (new,) = self._rows(stream, version, 1)
                await conn.fetch(RAW_INSERT_ONE, *new)

        return op

    async def reset(self) -> None:
        for statement in reset_statements(self.base):
            await self.conn.execute(statement)

    async def stored(self) -> int:
        n_events = await self.conn.fetchval("SELECT count(*) FROM events WHERE position > $1", self.base)
        n_outbox = await self.conn.fetchval("SELECT count(*) FROM outbox")
        if n_events != n_outbox:
            raise RuntimeError(f"events ({n_events}) and outbox ({n_outbox}) disagree")
        return int(n_events)


# --------------------------------------------------------------------------- eventsourcing


class EventSourcingLib:
    """eventsourcing's PostgresApplicationRecorder, configured directly (library defaults:
    pool size 1, table lock + NOTIFY per insert, pipelined), synchronous, single client; for the
    concurrent workload, a pool of ``pool_size`` connections shared by that many threads."""

    def __init__(self, url: str, note: str, pool_size: int = 1) -> None:
        from eventsourcing.persistence import StoredEvent
        from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

        parts = urlsplit(url)
        self.datastore = PostgresDatastore(
            dbname=parts.path.lstrip("/"),
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            pool_size=pool_size,
        )
        self.recorder = PostgresApplicationRecorder(self.datastore)
        self.recorder.create_table()
        self.stored_event = StoredEvent
        self.note = note

    def _stored(self, stream: uuid.UUID, version: int, count: int) -> list[Any]:
        """What eventsourcing's mapper stores: the event's own state (timestamp + attributes)."""
        now = datetime.now(UTC).isoformat()
        return [
            self.stored_event(
                originator_id=stream,
                originator_version=version + i + 1,
                topic=ES_TOPIC,
                state=json.dumps({"timestamp": now, "n": 1, "note": self.note}).encode(),
            )
            for i in range(count)
        ]

    def append_only(self, per_command: int) -> SyncOp:
        def op(stream: uuid.UUID, version: int) -> None:
            self.recorder.insert_events(self._stored(stream, version, per_command))

        return op

    def load_decide_append(self) -> SyncOp:
        def op(stream: uuid.UUID, _version: int) -> None:
            history = self.recorder.select_events(stream)
            total, version = 0, 0
            for e in history:
                total += json.loads(e.state)["n"]
                version = e.originator_version
            self.recorder.insert_events(self._stored(stream, version, 1))

        return op

    def reset(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("TRUNCATE stored_events RESTART IDENTITY")

    def stored(self) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT count(*) AS n FROM stored_events")
            row = curs.fetchone()
            return int(row["n"]) if row else 0

    def close(self) -> None:
        self.datastore.close()


async def connection_security(
    engine: AsyncEngine, raw: asyncpg.Connection, es: EventSourcingLib | None
) -> str:
    """Whether each contender's session is TLS (client defaults, same for all: sslmode=prefer)."""
    query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    async with engine.connect() as conn:
        ours = await conn.scalar(sa.text(query))
    parts = [f"ours ssl={ours}", f"raw ssl={await raw.fetchval(query)}"]
    if es is not None:

        def es_ssl() -> object:
            with es.datastore.transaction(commit=False) as curs:
                curs.execute(query)
                row = curs.fetchone()
                return row["ssl"] if row else None

        parts.append(f"eventsourcing ssl={await asyncio.to_thread(es_ssl)}")
    return ", ".join(parts) + " (client defaults left as they are)"
