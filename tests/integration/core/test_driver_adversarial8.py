"""Adversarial tests of shared/driver.py (review 8) on the real PostgreSQL.

Tests whose docstring starts with ``FIXED`` failed on the reviewed commit (the docstring says
why; shared/driver.py now handles each case); the others pin behaviour of the driver conversion
that held from the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared import driver
from shared.consumer import KafkaConsumerLoop
from shared.envelope import EventEnvelope
from shared.eventstore import ConcurrencyError, DuplicateEventError, EventStore
from shared.inbox import InboxConsumer, is_transient
from shared.kafka import dlq_topic, ensure_topics
from shared.migrations import create_consumer_tables, create_core_tables
from shared.tables import events
from shared.unit_of_work import UnitOfWork, retrying
from tests.integration.core.sample import Counted, Counter, registry
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.integration


_APPLIED_DDL = "CREATE TABLE applied (seq bigserial PRIMARY KEY, stream_id text NOT NULL, n int NOT NULL)"


def _store() -> EventStore:
    return EventStore("driver-adversarial8", registry)


def _envelope(stream: str, version: int, n: int = 1) -> EventEnvelope:
    [env] = _store().envelopes("Counter", stream, version - 1, [Counted(n=n)], correlation_id=uuid.uuid4())
    return env


async def _noop(uow: UnitOfWork, envelope: EventEnvelope) -> None:
    return None


async def _record(uow: UnitOfWork, envelope: EventEnvelope) -> None:
    await uow.conn.execute(
        sa.text("INSERT INTO applied (stream_id, n) VALUES (:s, :n)"),
        {"s": envelope.aggregate_id, "n": envelope.aggregate_version},
    )


async def _applied(engine: AsyncEngine, stream: str, version: int) -> bool:
    async with engine.connect() as conn:
        found = await conn.scalar(
            sa.text("SELECT count(*) FROM applied WHERE stream_id = :s AND n = :n"),
            {"s": stream, "n": version},
        )
    return bool(found)


async def _publish(kafka: str, topic: str, envelopes: list[EventEnvelope]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for env in envelopes:
            await producer.send_and_wait(
                topic, env.to_bytes(), key=env.kafka_key(), headers=env.kafka_headers()
            )
    finally:
        await producer.stop()


async def _terminate(database_url: str, pid: int) -> None:
    admin = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    await asyncio.sleep(0.2)  # let the client see the socket close


async def _one_conn_engine(database_url: str) -> AsyncEngine:
    engine = create_async_engine(database_url, pool_size=1, max_overflow=0)
    async with engine.begin() as conn:
        await conn.run_sync(create_core_tables)
        await conn.run_sync(create_consumer_tables)
    return engine


async def _kill_pooled(engine: AsyncEngine, database_url: str) -> None:
    """The pool's only connection dies while idle (a database restart, a failover)."""
    async with engine.connect() as conn:
        pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
    await _terminate(database_url, pid)


async def test_first_driver_statement_on_a_dead_pooled_connection_is_an_invalidated_dbapi_error(
    database_url: str,
) -> None:
    """FIXED (review 8): a unit of work whose first statement goes to the driver (every ``uow.load``, every
    consumer batch) on a pooled connection that died while idle gets the adapter's own
    ``AsyncAdapt_asyncpg_dbapi.InterfaceError`` from ``driver()``'s ``_start_transaction()``,
    which runs outside ``fetch``'s try/``_reraise``: not a SQLAlchemy ``DBAPIError``, no
    ``connection_invalidated``, and ``is_transient`` says False. Through SQLAlchemy (the old code)
    the same BEGIN failure was a ``DBAPIError`` with ``connection_invalidated``."""
    engine = await _one_conn_engine(database_url)
    try:
        await _kill_pooled(engine, database_url)
        async with engine.connect() as conn:
            await conn.begin()
            with pytest.raises(DBAPIError) as caught:
                await driver.fetch(conn, "SELECT 1")
            assert caught.value.connection_invalidated
            assert is_transient(caught.value)
    finally:
        await engine.dispose()


async def test_sqlalchemy_first_statement_on_a_dead_pooled_connection_is_invalidated(
    database_url: str,
) -> None:
    """The reference behaviour the driver must match: the same situation through SQLAlchemy."""
    engine = await _one_conn_engine(database_url)
    try:
        await _kill_pooled(engine, database_url)
        async with engine.connect() as conn:
            await conn.begin()
            with pytest.raises(DBAPIError) as caught:
                await conn.execute(sa.text("SELECT 1"))
            assert caught.value.connection_invalidated
            assert is_transient(caught.value)
    finally:
        await engine.dispose()


async def test_retrying_reruns_a_command_whose_pooled_connection_died_while_idle(
    database_url: str,
) -> None:
    """FIXED (review 8): ``retrying`` retries a command whose connection was found dead before COMMIT only
    on a ``DBAPIError`` with ``connection_invalidated``; the first statement of a command is
    ``uow.load`` -> ``read_stream`` -> ``driver.fetch``, whose BEGIN (``driver()``) raises the
    adapter's untranslated error: the command fails instead of being run again on a new
    connection (and an HTTP request gets a 500, not the edge's 503)."""
    engine = await _one_conn_engine(database_url)
    es = _store()

    async def add(uow: UnitOfWork) -> int:
        counter = await uow.load(Counter, "c-1")
        counter.count(1)
        await uow.save(counter)
        return counter.version

    try:
        await _kill_pooled(engine, database_url)
        assert await retrying(lambda: UnitOfWork(engine, es), add) == 1
    finally:
        await engine.dispose()


async def test_a_dead_connection_found_by_the_driver_does_not_stay_in_the_pool(database_url: str) -> None:
    """FIXED (review 8): the dead connection is never invalidated (the error escapes ``_reraise``), and
    returned to the pool a rollback with no adapter transaction is a no-op: the next checkout
    gets the same dead connection, and the next, until ``pool_recycle``. A consumer whose every
    batch starts with a driver statement (locks, first-seen) then fails every batch with a
    non-transient error, and so dead-letters healthy events after a database restart."""
    engine = await _one_conn_engine(database_url)
    try:
        await _kill_pooled(engine, database_url)
        for _ in range(2):  # the first uses may fail; after them the pool must be healthy
            with contextlib.suppress(Exception):
                async with engine.begin() as conn:
                    await driver.fetch(conn, "SELECT 1")
        async with engine.begin() as conn:
            assert (await driver.fetch(conn, "SELECT 41 + 1"))[0][0] == 42
    finally:
        await engine.dispose()


# --- the consumer on a database that restarted ----------------------------------------------------


async def _terminate_all(database_url: str) -> None:
    """Every session on the test database dies (what a database restart does to a pool)."""
    name = database_url.rsplit("/", 1)[1].split("?", 1)[0]
    admin = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await admin.close()
    await asyncio.sleep(0.2)


async def test_inbox_batch_on_a_dead_pooled_connection_fails_transiently(database_url: str) -> None:
    """FIXED (review 8): a consumer batch's first statement is a driver one (``_take_locks`` or the
    first-seen insert); on a pooled connection that died while idle it raises the adapter's raw
    ``InterfaceError``, which ``is_transient`` does not know: the consumer loop counts it as the
    event's own failure (``_failed``) and dead-letters a healthy event after ``max_attempts``."""
    engine = await _one_conn_engine(database_url)
    inbox = InboxConsumer("adv8", engine, _store(), {"Counted": _noop})
    try:
        await inbox.apply([_envelope("s", 1)])
        await _terminate_all(database_url)
        with pytest.raises(Exception) as caught:
            await inbox.apply([_envelope("s", 2)])
        assert is_transient(caught.value), type(caught.value)
    finally:
        await engine.dispose()


async def test_consumer_does_not_dead_letter_healthy_events_after_a_database_restart(
    database_url: str, kafka: str, topic: str
) -> None:
    """FIXED (review 8): end to end on Kafka. After every pooled connection dies (a database restart), the
    next event fails ``max_attempts`` times on the same never-invalidated dead connection (the
    error escapes ``_reraise``, so nothing invalidates it, and checking it back in is a no-op)
    and is dead-lettered, though nothing is wrong with it."""
    engine = await _one_conn_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(sa.text(_APPLIED_DDL))
    await ensure_topics(kafka, [topic, dlq_topic(topic)], partitions=1)
    inbox = InboxConsumer("adv8", engine, _store(), {"Counted": _record})
    loop = KafkaConsumerLoop(inbox, kafka, topic, f"g-{uuid.uuid4()}", max_attempts=3, retry_backoff=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        await _publish(kafka, topic, [_envelope("k", 1)])
        await eventually(lambda: _applied(engine, "k", 1), timeout=30)
        await _terminate_all(database_url)
        await _publish(kafka, topic, [_envelope("k", 2)])
        dead = await read_topic(kafka, dlq_topic(topic), expect=1, timeout=8)
        assert dead == [], "a healthy event was dead-lettered"
        await eventually(lambda: _applied(engine, "k", 2), timeout=20)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await engine.dispose()


# --- errors: the driver raises what SQLAlchemy raised ---------------------------------------------

_ERRORS = {
    "unique_violation": ("INSERT INTO adv8 VALUES (1, '{}')", None),
    "nul_in_jsonb": ("INSERT INTO adv8 VALUES (2, CAST($1 AS jsonb))", '{"a":"\\u0000"}'),
    "nul_in_text": ("SELECT length(CAST($1 AS text))", "a\x00b"),
    "bad_uuid": ("SELECT CAST($1 AS uuid)", "not-a-uuid"),
    "division_by_zero": ("SELECT 1 / (0 * CAST($1 AS int))", 1),
    "undefined_table": ("SELECT * FROM no_such_table_adv8 WHERE 1 = CAST($1 AS int)", 1),
    "serialization_failure": ("SELECT adv8_raise('40001', CAST($1 AS text))", "x"),
    "deadlock_detected": ("SELECT adv8_raise('40P01', CAST($1 AS text))", "x"),
    "lock_not_available": ("SELECT adv8_raise('55P03', CAST($1 AS text))", "x"),
    "query_canceled": ("SELECT adv8_raise('57014', CAST($1 AS text))", "x"),
    "admin_shutdown_raised": ("SELECT adv8_raise('57P01', CAST($1 AS text))", "x"),
    "out_of_memory": ("SELECT adv8_raise('53200', CAST($1 AS text))", "x"),
}


async def _error_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE IF NOT EXISTS adv8 (id int PRIMARY KEY, j jsonb)"))
        await conn.execute(sa.text("INSERT INTO adv8 VALUES (1, '{}') ON CONFLICT DO NOTHING"))
        await conn.execute(
            sa.text(
                "CREATE OR REPLACE FUNCTION adv8_raise(code text, msg text) RETURNS int "
                "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '%', msg USING ERRCODE = code; END $$"
            )
        )


def _shape(exc: BaseException) -> tuple[object, ...]:
    orig = getattr(exc, "orig", None)
    return (
        type(exc),
        type(orig),
        getattr(orig, "sqlstate", None),
        getattr(exc, "connection_invalidated", None),
        is_transient(exc),
    )


@pytest.mark.parametrize("case", sorted(_ERRORS))
async def test_a_statement_error_is_raised_as_sqlalchemy_raised_it(
    core_engine: AsyncEngine, case: str
) -> None:
    """Class, DBAPI class, sqlstate, ``connection_invalidated`` and ``is_transient`` agree between
    the driver and the same statement sent through SQLAlchemy (its ``:p`` form)."""
    await _error_tables(core_engine)
    sql, arg = _ERRORS[case]
    args = () if "$1" not in sql else (arg,)
    shapes = []
    async with core_engine.connect() as conn:
        await conn.begin()
        with pytest.raises(DBAPIError) as via_sa:
            await conn.execute(sa.text(sql.replace("$1", ":p")), {"p": arg} if args else {})
        shapes.append(_shape(via_sa.value))
    async with core_engine.connect() as conn:
        await conn.begin()
        with pytest.raises(DBAPIError) as via_driver:
            await driver.execute(conn, sql, *args)
        shapes.append(_shape(via_driver.value))
    assert shapes[0] == shapes[1]


async def test_a_real_lock_timeout_and_deadlock_through_the_driver_are_transient(
    core_engine: AsyncEngine,
) -> None:
    """Real 55P03 (lock_timeout on an advisory lock held elsewhere) and 40P01 (two driver
    sessions taking two locks in opposite orders) are DBAPIErrors ``is_transient`` retries."""
    async with core_engine.connect() as holder, core_engine.connect() as waiter:
        await holder.begin()
        await driver.fetch(holder, "SELECT pg_advisory_xact_lock(8, 1)")
        await waiter.begin()
        await driver.execute(waiter, "SET LOCAL lock_timeout = '50ms'")
        with pytest.raises(DBAPIError) as timeout:
            await driver.fetch(waiter, "SELECT pg_advisory_xact_lock(8, 1)")
        assert timeout.value.orig.sqlstate == "55P03" and is_transient(timeout.value)  # type: ignore[union-attr]
    a_has_1 = asyncio.Event()
    b_has_2 = asyncio.Event()

    async def session(
        first: int, second: int, mine: asyncio.Event, theirs: asyncio.Event
    ) -> BaseException | None:
        async with core_engine.connect() as conn:
            await conn.begin()
            await driver.fetch(conn, "SELECT pg_advisory_xact_lock(9, $1)", first)
            mine.set()
            await theirs.wait()
            try:
                await driver.fetch(conn, "SELECT pg_advisory_xact_lock(9, $1)", second)
            except DBAPIError as exc:
                return exc
            return None

    results = await asyncio.gather(session(1, 2, a_has_1, b_has_2), session(2, 1, b_has_2, a_has_1))
    errors = [r for r in results if r is not None]
    assert len(errors) == 1
    assert errors[0].orig.sqlstate == "40P01" and is_transient(errors[0])  # type: ignore[attr-defined]


# --- prepared statements and a schema change made while connections are pooled ------------------


async def _failures_after_a_column_type_change(
    database_url: str, read: str, *, pooled: int = 4
) -> tuple[int, list[str]]:
    """Warm ``pooled`` connections with a read of ``events``, change a column's type from
    another session (a migration run by another process), then read once on each connection."""
    engine = create_async_engine(database_url, pool_size=pooled, max_overflow=0)
    es = _store()
    async with engine.begin() as conn:
        await conn.run_sync(create_core_tables)
        await es.append(conn, es.envelopes("Counter", "m", 0, [Counted(n=1)], correlation_id=uuid.uuid4()))

    async def one_read() -> None:
        async with engine.begin() as conn:
            if read == "driver":
                await es.read_stream(conn, "m")
            else:
                await conn.execute(
                    sa.select(events).where(events.c.stream_id == sa.bindparam("s")), {"s": "m"}
                )

    async def hold_and_read(gate: asyncio.Barrier) -> None:
        async with engine.begin() as conn:
            await gate.wait()  # every connection of the pool at once: each one prepares the read
            if read == "driver":
                await es.read_stream(conn, "m")
            else:
                await conn.execute(
                    sa.select(events).where(events.c.stream_id == sa.bindparam("s")), {"s": "m"}
                )

    try:
        gate = asyncio.Barrier(pooled)
        await asyncio.gather(*(hold_and_read(gate) for _ in range(pooled)))
        admin = await asyncpg.connect(database_url.replace("+asyncpg", ""))
        try:
            await admin.execute("ALTER TABLE events ALTER COLUMN schema_version TYPE bigint")
        finally:
            await admin.close()
        errors: list[str] = []
        for _ in range(pooled):
            try:
                await one_read()
            except DBAPIError as exc:
                errors.append(type(exc.orig).__name__)
        return len(errors), errors
    finally:
        await engine.dispose()


async def test_a_schema_change_costs_sqlalchemy_reads_one_failure_per_engine(database_url: str) -> None:
    """The reference: SQLAlchemy's first ``InvalidCachedStatementError`` invalidates the prepared
    statements of every pooled connection of the engine (``_invalidate_schema_cache``)."""
    failed, _ = await _failures_after_a_column_type_change(database_url, "sqlalchemy")
    assert failed <= 1


async def test_a_schema_change_costs_driver_reads_one_failure_per_engine(database_url: str) -> None:
    """FIXED (review 8): asyncpg's own statement cache (which the driver uses) is per connection, and the
    driver's ``InvalidCachedStatementError`` never reaches SQLAlchemy's
    ``handle_dbapi_exception``: after a migration changes a column type, *every* pooled
    connection fails its next ``read_stream``/append/inbox statement once (inside a transaction
    asyncpg cannot re-prepare), not one per engine. The error (0A000) is not transient, so a
    consumer counts each as the event's own failure: with a pool (10 + 10) larger than
    ``max_attempts`` (5) a healthy event can be dead-lettered by a migration."""
    failed, errors = await _failures_after_a_column_type_change(database_url, "driver")
    assert failed <= 1, errors


# --- the transaction: first statement, savepoints, rollback, what goes back to the pool ---------


async def _rows(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        return [int(r[0]) for r in await conn.execute(sa.text("SELECT id FROM adv8t ORDER BY id"))]


async def _plain_table(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE IF NOT EXISTS adv8t (id int PRIMARY KEY)"))


async def test_a_unit_of_work_whose_first_statement_is_the_driver_is_rolled_back_on_error(
    core_engine: AsyncEngine,
) -> None:
    await _plain_table(core_engine)
    with pytest.raises(RuntimeError):
        async with UnitOfWork(core_engine, _store()) as uow:
            await driver.execute(uow.conn, "INSERT INTO adv8t VALUES ($1)", 1)
            raise RuntimeError("the command fails after its first statement")
    assert await _rows(core_engine) == []


async def test_savepoints_around_driver_statements(core_engine: AsyncEngine) -> None:
    """A savepoint rolled back undoes its driver statements; a driver statement failing inside a
    savepoint (as in ``InboxConsumer._release``) leaves the outer transaction usable."""
    await _plain_table(core_engine)
    async with core_engine.connect() as conn:
        await conn.begin()
        await driver.execute(conn, "INSERT INTO adv8t VALUES ($1)", 1)
        nested = await conn.begin_nested()
        await driver.execute(conn, "INSERT INTO adv8t VALUES ($1)", 2)
        await nested.rollback()
        with pytest.raises(IntegrityError):
            async with conn.begin_nested():
                await driver.execute(conn, "INSERT INTO adv8t VALUES ($1)", 3)
                await driver.execute(conn, "INSERT INTO adv8t VALUES ($1)", 1)
        async with conn.begin_nested():  # a savepoint as the first thing after BEGIN
            await driver.execute(conn, "INSERT INTO adv8t VALUES ($1)", 4)
        await driver.execute(conn, "INSERT INTO adv8t VALUES ($1)", 5)
        await conn.commit()
    assert await _rows(core_engine) == [1, 4, 5]


async def test_a_savepoint_whose_connection_is_lost_raises_the_invalidated_error(
    core_engine: AsyncEngine, database_url: str
) -> None:
    """``_release``'s ``async with conn.begin_nested()`` around a driver statement whose
    connection is lost: what comes out is still the invalidated ``DBAPIError`` that
    ``is_transient`` retries (not an error about rolling back the savepoint)."""
    async with core_engine.connect() as conn:
        await conn.begin()
        pid = (await driver.fetch(conn, "SELECT pg_backend_pid()"))[0][0]
        with pytest.raises(DBAPIError) as caught:
            async with conn.begin_nested():
                await driver.fetch(conn, "SELECT 1")
                await _terminate(database_url, pid)
                await driver.fetch(conn, "SELECT 2")
        assert caught.value.connection_invalidated and is_transient(caught.value)


async def test_a_failed_batch_leaves_no_transaction_and_no_advisory_lock_on_the_pooled_connection(
    database_url: str,
) -> None:
    """After an append conflict (IntegrityError via the driver) in a batch that took advisory
    locks through the driver, the connection back in the pool is idle, outside any transaction,
    and holds no advisory lock."""
    engine = await _one_conn_engine(database_url)
    es = _store()
    try:
        async with engine.begin() as conn:
            await es.append(
                conn, es.envelopes("Counter", "z", 0, [Counted(n=1)], correlation_id=uuid.uuid4())
            )
        with pytest.raises(ConcurrencyError):
            async with UnitOfWork(engine, es) as uow:
                await driver.fetch(
                    uow.conn, "SELECT pg_advisory_xact_lock(77, 1), pg_advisory_xact_lock_shared(77, 2)"
                )
                await es.append(
                    uow.conn, es.envelopes("Counter", "z", 0, [Counted(n=2)], correlation_id=uuid.uuid4())
                )
        async with engine.connect() as conn:
            # The pooled connection as it came back (driver() would begin a transaction).
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None and not raw.is_in_transaction()
            pid = await raw.fetchval("SELECT pg_backend_pid()")  # outside any transaction
            admin = await asyncpg.connect(database_url.replace("+asyncpg", ""))
            try:
                locks = await admin.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE pid = $1 AND locktype = 'advisory'", pid
                )
                state = await admin.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
            finally:
                await admin.close()
        assert locks == 0
        assert state == "idle"
    finally:
        await engine.dispose()


async def test_a_driver_write_on_a_commit_as_you_go_connection_is_rolled_back_with_it(
    core_engine: AsyncEngine,
) -> None:
    """FIXED (was latent: no caller wrote so): on a connection without an explicit
    ``begin()``, SQLAlchemy 2 autobegins with the first statement and ``rollback()`` undoes it
    all. ``driver()`` only starts the adapter's transaction if ``conn.in_transaction()``, so a
    driver statement sent first there is autocommitted — exactly what the module docstring says
    ``driver`` prevents — and a later ``rollback()`` keeps it while undoing the SQLAlchemy
    statements after it."""
    await _plain_table(core_engine)
    async with core_engine.connect() as conn:
        await driver.execute(conn, "INSERT INTO adv8t VALUES ($1)", 1)
        await conn.execute(sa.text("INSERT INTO adv8t VALUES (2)"))
        await conn.rollback()
    assert await _rows(core_engine) == []


async def test_retrying_reruns_a_command_whose_connection_is_lost_mid_transaction(
    core_engine: AsyncEngine, database_url: str
) -> None:
    """Lost after the transaction began (the append, a driver statement, finds it dead): the
    invalidated DBAPIError makes ``retrying`` run the command again, on a new connection."""
    es = _store()
    attempts = 0

    async def add(uow: UnitOfWork) -> int:
        nonlocal attempts
        attempts += 1
        counter = await uow.load(Counter, "lost")
        if attempts == 1:
            pid = (await driver.fetch(uow.conn, "SELECT pg_backend_pid()"))[0][0]
            await _terminate(database_url, pid)
        counter.count(1)
        await uow.save(counter)
        return counter.version

    assert await retrying(lambda: UnitOfWork(core_engine, es), add) == 1
    assert attempts == 2


async def test_a_cancelled_driver_statement_leaves_the_pool_usable(database_url: str) -> None:
    """A driver statement cancelled client-side (a timeout): the unit of work rolls back and the
    pooled connection serves the next one, outside any transaction."""
    engine = await _one_conn_engine(database_url)
    try:
        with pytest.raises(TimeoutError):
            async with UnitOfWork(engine, _store()) as uow:
                await asyncio.wait_for(driver.fetch(uow.conn, "SELECT pg_sleep(5)"), 0.2)
        async with engine.begin() as conn:
            assert (await driver.fetch(conn, "SELECT 6 * 7"))[0][0] == 42
    finally:
        await engine.dispose()


# --- append and read_stream: what is stored and read back ---------------------------------------


async def test_a_very_large_append_batch_is_one_statement_and_reads_back_in_order(
    core_engine: AsyncEngine,
) -> None:
    """20 000 events over 50 streams in one append (asyncpg array parameters of that size)."""
    es = _store()
    batch = [
        env
        for s in range(50)
        for env in es.envelopes(
            "Counter", f"big-{s}", 0, [Counted(n=i) for i in range(400)], correlation_id=uuid.uuid4()
        )
    ]
    async with core_engine.begin() as conn:
        positions = await es.append(conn, batch)
    assert len(positions) == 20_000 and positions == sorted(set(positions))
    async with core_engine.connect() as conn:
        back = await es.read_stream(conn, "big-7", after_version=390)
        queued = await conn.scalar(sa.text("SELECT count(*) FROM outbox"))
    assert [e.aggregate_version for e in back] == list(range(391, 401))
    assert [e.data["n"] for e in back] == list(range(390, 400))
    assert queued == 20_000


async def test_read_stream_equals_read_all_for_awkward_json(core_engine: AsyncEngine) -> None:
    """Data escaping survives the driver: quotes, backslashes, U+2028, astral characters, long
    strings, nested values; ``read_stream`` (driver) and ``read_all`` (SQLAlchemy) agree, as do
    the types of ids and timestamps (tz-aware UTC)."""
    es = _store()
    stream = "json-" + str(uuid.uuid4())
    weird = {"n": 1, "s": 'q"\\/\u2028\u2029\U0001f600é\t\n', 'k"ey': [None, True, 1.5, {"x": "y" * 10_000}]}
    envs = es.envelopes("Thing", stream, 0, [Counted(n=1)], correlation_id=uuid.uuid4())
    envs = [envs[0].model_copy(update={"data": weird, "event_type": "Unknown"})]
    async with core_engine.begin() as conn:
        await es.append(conn, envs)
    async with core_engine.connect() as conn:
        [via_driver] = await es.read_stream(conn, stream)
        via_sa = [s.envelope for s in await es.read_all(conn) if s.envelope.aggregate_id == stream]
    assert via_driver.data == weird
    assert via_driver == via_sa[0]
    assert via_driver.model_dump_json() == via_sa[0].model_dump_json()
    assert via_driver.occurred_at.utcoffset() is not None
    assert via_driver.event_id == envs[0].event_id and hash(via_driver.event_id) == hash(envs[0].event_id)
    assert via_driver.event_id in {envs[0].event_id: 1}


async def test_a_nul_in_event_data_is_a_deterministic_error_not_a_transient_one(
    core_engine: AsyncEngine,
) -> None:
    """jsonb refuses U+0000 (22P05): a DBAPIError, as through SQLAlchemy (``_ERRORS``), that
    ``is_transient`` does not retry."""
    es = _store()
    [env] = es.envelopes("Counter", "nul", 0, [Counted(n=1)], correlation_id=uuid.uuid4())
    env = env.model_copy(update={"data": {"s": "a\x00b"}})
    with pytest.raises(DBAPIError) as caught:
        async with core_engine.begin() as conn:
            await es.append(conn, [env])
    assert caught.value.orig.sqlstate == "22P05"  # type: ignore[union-attr]
    assert not is_transient(caught.value)


async def test_trace_context_is_sql_null_when_tracing_is_off_and_a_jsonb_object_when_on(
    core_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    es = _store()
    async with core_engine.begin() as conn:
        await es.append(conn, es.envelopes("Counter", "off", 0, [Counted(n=1)], correlation_id=uuid.uuid4()))
    carrier = '{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}'
    monkeypatch.setattr("shared.eventstore.current_trace_context", lambda: carrier)
    async with core_engine.begin() as conn:
        await es.append(
            conn, es.envelopes("Counter", "on", 0, [Counted(n=1), Counted(n=2)], correlation_id=uuid.uuid4())
        )
    async with core_engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.text(
                    "SELECT stream_id, trace_context IS NULL AS missing, "
                    "jsonb_typeof(trace_context) AS kind, trace_context->>'traceparent' AS tp "
                    "FROM events ORDER BY position"
                )
            )
        ).all()
    assert [(r.stream_id, r.missing, r.kind) for r in rows] == [
        ("off", True, None),
        ("on", False, "object"),
        ("on", False, "object"),
    ]
    assert rows[1].tp == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def test_many_concurrent_commands_on_one_stream_all_land_through_retrying(
    core_engine: AsyncEngine,
) -> None:
    """Twenty commands race for the same versions: conflicts are ConcurrencyError (not a raw
    IntegrityError) and ``retrying`` gets every one in, versions 1..20 without gaps."""
    es = _store()

    async def add(uow: UnitOfWork) -> int:
        counter = await uow.load(Counter, "race")
        counter.count(1)
        await asyncio.sleep(0)
        await uow.save(counter)
        return counter.version

    versions = await asyncio.gather(
        *(retrying(lambda: UnitOfWork(core_engine, es), add, attempts=40) for _ in range(20))
    )
    assert sorted(versions) == list(range(1, 21))


async def test_a_duplicate_event_id_in_one_batch_is_duplicate_event_error(core_engine: AsyncEngine) -> None:
    es = _store()
    eid = uuid.uuid4()
    envs = es.envelopes(
        "Counter", "dup", 0, [Counted(n=1), Counted(n=2)], correlation_id=eid, event_ids=[eid, eid]
    )
    with pytest.raises(DuplicateEventError):
        async with core_engine.begin() as conn:
            await es.append(conn, envs)


# --- membership: first_report_of ordering -------------------------------------------------------


async def test_first_report_of_orders_by_member_version_then_reported_at(database_url: str) -> None:
    """The first report of an injury: lowest ``member_version``, then earliest ``reported_at``
    (a tie on the version), whatever the insertion order; another day's or member's reports
    never count; None when there is none."""
    from datetime import UTC, date, datetime

    from services.membership import tables as mt
    from services.membership.domain import FirstReport
    from services.membership.views import first_report_of

    engine = create_async_engine(database_url)
    member, day = uuid.uuid4(), date(2016, 8, 1)

    def report(version: int, reported_on: date, at_hour: int, **kw: object) -> dict[str, object]:
        return {
            "report_id": uuid.uuid4(),
            "member_id": kw.get("member", member),
            "occurred_on": kw.get("day", day),
            "work_related": False,
            "traffic_accident": False,
            "severity": "minor",
            "reported_on": reported_on,
            "member_version": version,
            "reported_at": datetime(2016, 8, 2, at_hour, tzinfo=UTC),
        }

    try:
        async with engine.begin() as conn:
            await conn.run_sync(mt.metadata.create_all)
            await conn.execute(
                sa.insert(mt.injury_reports),
                [
                    report(7, date(2016, 8, 9), 1),
                    report(5, date(2016, 8, 6), 9),
                    report(5, date(2016, 8, 5), 3),  # same version, earlier: the first
                    report(1, date(2016, 8, 1), 0, day=date(2016, 7, 31)),
                    report(1, date(2016, 8, 1), 0, member=uuid.uuid4()),
                ],
            )
        async with engine.connect() as conn:
            assert await first_report_of(conn, member, day) == FirstReport(date(2016, 8, 5), 5)
            assert await first_report_of(conn, member, date(2016, 8, 2)) is None
    finally:
        await engine.dispose()
