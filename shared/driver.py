"""The asyncpg connection under a SQLAlchemy connection, for the statements every event pays for.

SQLAlchemy Core adds about 100 µs of CPU to each statement it executes (measured on this
machine: 180 µs against 77 µs for the same prepared SELECT on plain asyncpg). That is nothing for
a query an operator runs, and most of the cost of an injury report, which sends a dozen: on a
2-core machine shared with PostgreSQL and Kafka, CPU per event is the throughput. So the hot
statements of the shared core (append, read a stream, the inbox's batch statements) and of the
hottest reactions go to asyncpg directly, *in the same transaction*: one connection, one BEGIN,
one COMMIT, still owned by SQLAlchemy.

SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its first statement. A statement sent to
asyncpg before that would run outside the transaction (autocommitted, never rolled back), so
``driver`` starts the adapter's transaction first, and honours the engine-wide "schema changed"
mark SQLAlchemy keeps for prepared statements. That uses the adapter's private
``_transaction`` / ``_start_transaction`` / ``_check_type_cache_invalidation`` and the dialect's
``_invalidate_schema_cache`` (SQLAlchemy is pinned in pyproject.toml;
tests/integration/core/test_driver*.py fail if an upgrade changes them).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

#: asyncpg ships no type information.
Driver = Any

#: A statement that changes nothing and holds nothing: a plain SELECT, without row locks,
#: advisory locks, ``SELECT ... INTO`` (a new table), or the built-in functions with effects
#: (sequences, settings, notifications), and alone in its string. Anything else counts as a
#: write (``writes``), erring on the safe side. What a pattern cannot see: a function with effects
#: called from a SELECT (``SELECT f()``). The schema defines none today (its functions are
#: triggers, which fire only from writes); one that is added must be named here.
_PLAIN_READ = re.compile(
    r"\s*SELECT\b(?!.*(\bFOR\s+(UPDATE|NO\s+KEY|SHARE|KEY)\b|\bINTO\b"
    r"|advisory|nextval|setval|set_config|pg_notify|pg_logical_emit_message|\blo_\w+|dblink))",
    re.I | re.S,
)


#: Comments, which could part ``FOR`` from ``UPDATE`` (``FOR/**/UPDATE``), and the string
#: literals and quoted names a comment marker may stand in (``'--'``), which are kept. Strings
#: are read as with ``standard_conforming_strings`` on (PostgreSQL's default), E-strings with
#: their backslash escapes. Read wrongly, a string only ever keeps more text, never less.
_COMMENT_OR_QUOTED = re.compile(
    r"(?P<quoted>(?<![\w$])[Ee]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$(?P<tag>\w*)\$.*?\$(?P=tag)\$)"
    r"|/\*.*?\*/|--[^\n]*",
    re.S,
)


def _without_comments(sql: str) -> str:
    return _COMMENT_OR_QUOTED.sub(lambda m: m.group("quoted") or " ", sql)


#: A second statement after the first (the simple query protocol runs them all).
_SECOND_STATEMENT = re.compile(r";\s*\S")
#: A statement that ends the transaction it is sent in (``ROLLBACK TO SAVEPOINT`` does not).
_ENDS_TRANSACTION = re.compile(
    r"(^|;)\s*(COMMIT|END|ABORT|PREPARE\s+TRANSACTION|ROLLBACK(?!\s+((WORK|TRANSACTION)\s+)?TO\b))\b",
    re.I,
)


@functools.lru_cache(maxsize=4096)
def _classify(sql: str) -> tuple[bool, bool]:
    """(may change or lock something, ends the transaction) for one statement's text. Cached:
    the statements are the code's own constants, and a long SELECT through ``_PLAIN_READ``'s
    lookahead cost ~5 % of membership's CPU under a burst (py-spy) before it was."""
    if "--" in sql or "/*" in sql:
        sql = _without_comments(sql)
    if _PLAIN_READ.match(sql) and not _SECOND_STATEMENT.search(sql):
        return False, False
    return True, bool(_ENDS_TRANSACTION.search(sql))


def _count(info: dict[str, Any], sql: str) -> None:
    if "writes" not in info:
        return
    write, ends = _classify(sql)
    if write:
        info["writes"] += 1
        if ends:
            info["ends"] += 1


def _count_failure(info: dict[str, Any]) -> None:
    # A statement the server refused aborts the transaction: whatever the caller does with the
    # error, everything after it in this transaction fails, and COMMIT silently rolls back.
    # Counted always (it costs nothing until something fails), counted as a write too while
    # writes are counted.
    info["failures"] = info.get("failures", 0) + 1
    if "writes" in info:
        info["writes"] += 1


def count_writes(conn: AsyncConnection, *, on: bool = True) -> None:
    """Start (or, ``on=False``, stop) counting on ``conn`` the statements that may change or lock
    something, sent through SQLAlchemy or this module. Group commit (shared/group_commit.py)
    compares ``writes`` before and after a command to know whether a refused command left
    anything in the shared transaction. Off elsewhere: no statement pays for the check."""
    if on:
        conn.info["writes"] = conn.info["ends"] = 0
    else:
        conn.info.pop("writes", None)
        conn.info.pop("ends", None)


def writes(conn: AsyncConnection) -> int:
    """Statements counted since ``count_writes(conn)``: those that may change or lock something,
    and those that failed (a failure aborts the transaction, a change too)."""
    return int(conn.info["writes"])


def transaction_ends(conn: AsyncConnection) -> int:
    """Statements sent as SQL since ``count_writes(conn)`` that end the transaction they run in
    (``COMMIT``, ``ROLLBACK``, ...), which SQLAlchemy does not see: a command of a group that
    sends one ends everyone's transaction."""
    return int(conn.info["ends"])


def failures(conn: AsyncConnection) -> int:
    """Statements that failed in ``conn``'s transaction, whether or not the caller went on, less
    those a rollback to a savepoint undid: while it is not 0, COMMIT would silently roll back."""
    return int(conn.info.get("failures", 0))


@event.listens_for(Engine, "before_cursor_execute")
def _count_sqlalchemy_statement(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    _count(conn.info, statement)


@event.listens_for(Engine, "begin")
def _forget_failures(conn: Any) -> None:
    conn.info["failures"] = 0
    conn.info.pop("savepoints", None)


# SQLAlchemy's savepoints nest (``begin_nested``), and the "savepoint" event is told no name
# when SQLAlchemy makes one up: a stack of the failure counts at each savepoint's start.
@event.listens_for(Engine, "savepoint")
def _mark_savepoint(conn: Any, name: str | None) -> None:
    if not conn.invalidated:  # a lost connection: its transaction is gone, and its info with it
        conn.info.setdefault("savepoints", []).append(conn.info.get("failures", 0))


def _pop_mark(conn: Any) -> int | None:
    """The failure count when the innermost savepoint began, off the stack (it has ended)."""
    marks = None if conn.invalidated else conn.info.get("savepoints")
    return marks.pop() if marks else None


@event.listens_for(Engine, "rollback_savepoint")
def _undo_failures_since_savepoint(conn: Any, name: str, context: Any) -> None:
    mark = _pop_mark(conn)
    if mark is not None:
        conn.info["failures"] = mark


@event.listens_for(Engine, "release_savepoint")
def _release_savepoint(conn: Any, name: str, context: Any) -> None:
    _pop_mark(conn)


def _server_refused(exc: BaseException | None) -> bool:
    """The server answered with an error (which aborts its transaction), as opposed to an error
    raised before the statement left the client (a parameter asyncpg cannot encode, a missing
    bind value), which leaves the transaction as it was. asyncpg gives some client-side errors a
    SQLSTATE too (22000 for a parameter it cannot encode); only the server's carry a severity.
    SQLAlchemy's adapter raises its own error from asyncpg's."""
    return any(getattr(e, "severity", None) for e in (exc, getattr(exc, "__cause__", None)))


@event.listens_for(Engine, "handle_error")
def _count_sqlalchemy_failure(context: Any) -> None:
    conn = context.connection
    if conn is None or conn.closed or conn.invalidated:
        return
    if _server_refused(context.original_exception):
        _count_failure(conn.info)
    statement = context.statement or ""
    if statement.lstrip()[:9].upper() == "SAVEPOINT":
        _pop_mark(conn)  # the savepoint was never made: the mark pushed for it goes


async def driver(conn: AsyncConnection) -> Driver:
    """The asyncpg connection of ``conn``, inside ``conn``'s transaction.

    As SQLAlchemy's own first statement would: a connection without a transaction begins one
    ("commit as you go"), the adapter's lazy BEGIN is sent, and a schema change another
    connection of this engine ran into (a stale prepared statement) empties this connection's
    statement cache before it is used."""
    if not conn.in_transaction():
        await conn.begin()
    fairy = await conn.get_raw_connection()
    adapter: Any = fairy.dbapi_connection  # AsyncAdapt_asyncpg_connection
    await adapter._check_type_cache_invalidation(conn.dialect._invalidate_schema_cache_asof)  # type: ignore[attr-defined]
    if adapter._transaction is None:
        await adapter._start_transaction()
    return fairy.driver_connection


async def fetch(conn: AsyncConnection, sql: str, *args: Any) -> list[Any]:
    """Rows of ``sql`` ($1, $2, ... parameters), as asyncpg records."""
    _count(conn.info, sql)
    try:
        raw = await driver(conn)  # may meet a connection that died in the pool
        return list(await raw.fetch(sql, *args))
    except Exception as exc:
        await _reraise(conn, exc, sql)
        raise  # unreachable: _reraise always raises
    except BaseException:
        await _interrupted(conn)
        raise


async def execute(conn: AsyncConnection, sql: str, *args: Any) -> str:
    """Run ``sql`` for its effect; asyncpg's status line (``INSERT 0 1``)."""
    _count(conn.info, sql)
    try:
        raw = await driver(conn)
        return str(await raw.execute(sql, *args))
    except Exception as exc:
        await _reraise(conn, exc, sql)
        raise
    except BaseException:
        await _interrupted(conn)
        raise


async def executemany(conn: AsyncConnection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run ``sql`` once for each row of parameters, all in one round trip (asyncpg pipelines the
    executions and waits once): a projection writing many events' rows pays one wait, not one
    each. A failing row fails the whole call, and the transaction with it: asyncpg sends rows as
    it encodes them, so a row it cannot encode (a client-side error, which aborts nothing on the
    server) may come after thousands it already sent; counted as a failed statement all the
    same, so ``UnitOfWork.commit`` refuses what would be half a call."""
    if not rows:
        return
    _count(conn.info, sql)
    raw = None
    try:
        raw = await driver(conn)
        await raw.executemany(sql, rows)
    except Exception as exc:
        if raw is not None and not _server_refused(exc):
            with contextlib.suppress(Exception):
                _count_failure(conn.info)
        await _reraise(conn, exc, sql)
        raise
    except BaseException:
        await _interrupted(conn)
        raise


async def _interrupted(conn: AsyncConnection) -> None:
    """A statement cancelled (a caller's timeout) or interrupted while the server ran it, or
    during the lazy BEGIN: the server cancels it, which aborts the transaction, and asyncpg may
    hold a transaction SQLAlchemy does not know of (asyncpg marks it before BEGIN is answered).
    What SQLAlchemy does for its own statements on such an exit: the connection is invalidated
    (closed, never reused), so nothing can commit on it, nor a later checkout of it."""
    with contextlib.suppress(Exception):
        _count_failure(conn.info)
    # Until the invalidation is through, the connection must not be rolled back or reused (a
    # rollback racing the close would replace the cancellation with "connection is closed", which
    # reads as a connection lost before COMMIT: safe to run again). A second cancellation waits
    # for it too; the first is what goes on up.
    invalidating = asyncio.ensure_future(conn.invalidate())
    while not invalidating.done():
        try:
            await asyncio.shield(invalidating)
        except asyncio.CancelledError:
            continue
        except Exception:
            break


async def left_transaction(conn: AsyncConnection) -> bool:
    """The server is out of the transaction SQLAlchemy's adapter believes open: a ``COMMIT`` or
    ``ROLLBACK`` sent as SQL, whatever its text looked like. No round trip (asyncpg tracks the
    server's transaction status from every reply)."""
    fairy = await conn.get_raw_connection()
    adapter: Any = fairy.dbapi_connection
    raw: Any = fairy.driver_connection
    return adapter._transaction is not None and not raw.is_in_transaction()


async def _reraise(conn: AsyncConnection, exc: Exception, sql: str) -> None:
    """Raise what SQLAlchemy would have raised for ``exc`` (``IntegrityError``, ``DBAPIError``
    with ``connection_invalidated`` on a lost connection, ...), so callers' error handling (retry
    a command, classify a consumer failure as transient, answer 503) is the same either way."""
    if _server_refused(exc):
        with contextlib.suppress(Exception):  # a connection already closed counts nothing
            _count_failure(conn.info)
    fairy = await conn.get_raw_connection()
    adapter: Any = fairy.dbapi_connection
    try:
        adapter._handle_exception(exc)  # raises the DBAPI-level error asyncpg's maps to
    except adapter.dbapi.Error as dbapi_exc:
        dialect = conn.dialect
        if isinstance(
            dbapi_exc, adapter.dbapi.InvalidCachedStatementError | adapter.dbapi.InternalServerError
        ):
            # What SQLAlchemy does for its own statements: every connection of the engine
            # drops its prepared statements before its next use, not only this one.
            dialect._invalidate_schema_cache()  # type: ignore[attr-defined]
        lost = bool(dialect.is_disconnect(dbapi_exc, adapter, None))
        if lost:
            await conn.invalidate()
        raise DBAPIError.instance(
            sql, None, dbapi_exc, adapter.dbapi.Error, connection_invalidated=lost, dialect=dialect
        ) from exc
    # Not a database error (OSError, TimeoutError, ...): as it is.
    raise exc
