"""Group commit: commands that arrive while another's transaction is open share it.

A small command's transaction costs more than its statements: a pooled connection, BEGIN, COMMIT
and its WAL flush, and the client-side work around each. Under load, commands that arrive while
a group is still running join it instead of opening their own. Nothing waits to gather a group:
a group closes as soon as its last command has run, and the commands that arrive while it
commits open the next one. A command that finds no other in flight runs alone at once.

Each command still runs its own handler, in its own task (so its log, trace and correlation ids
are its own), one after another on the group's connection: it reads what the commands before it
in the group wrote, exactly as if they had committed before it began.

A command refused before it wrote anything (a member not found, a date the domain refuses: the
checks a handler makes before its writes) leaves the group going on: the transaction holds
nothing of it, and its refusal is answered once the group has committed (it may rest on what
the commands before it wrote) (``shared.driver.writes`` counts every statement that may change
or lock something). If any other command of a group fails, nothing of the group commits: its
transaction is rolled back and every command of it runs again alone (``retrying``), so each gets
its own answer and one failure never takes another command down with it; the same when the
server refuses the COMMIT. If the connection is lost during COMMIT, nobody knows whether it
landed, so every command of the group gets that error, as a lone command would.

Cancellation keeps a lone command's meaning: a command whose caller gives up (a timeout) before
its group sends COMMIT leaves nothing, so its group rolls back and the others run again alone; a
leader cancelled (shutdown) rolls its group back the same way, once the command in its turn is
through with the connection. A command that ends the shared transaction itself (COMMIT or
ROLLBACK, through SQLAlchemy or as SQL) may have landed the commands before it: running them
again could do them twice, so every command of the group gets ``TransactionEnded``. A statement
cancelled inside a command (a ``wait_for`` around one read) aborts the transaction on the server:
``shared.driver`` invalidates the connection then, as SQLAlchemy does for its own, and the group
rolls back and runs its commands again alone.

Only commands that take no locks beyond their own rows, and change no settings, should be
grouped: a grouped command that waits on another transaction holds up the whole group, and a
``SET LOCAL`` lasts until the shared transaction ends, so it reaches the commands after it. The
one lock a grouped report may take is its Idempotency-Key's (shared/runtime.py), held only while
the same key is in flight twice, a client's retry: the retry's group waits for the first to
commit, then finds its answer (the ``lock_timeout`` it sets before that lock bounds the waits of
the commands after it too, harmlessly).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from prometheus_client import Counter, Histogram
from sqlalchemy.exc import DBAPIError

from shared.driver import count_writes, failures, left_transaction, transaction_ends, writes
from shared.unit_of_work import UnitOfWork, retrying

T = TypeVar("T")
log = logging.getLogger(__name__)

GROUP_SIZE = Histogram(
    "group_commit_size",
    "Commands per committed group transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
GROUPS_FAILED = Counter("group_commit_failed", "Groups rolled back whose commands then ran again alone")


class _Failed(Exception):
    """The group rolled back: its commands run again alone."""


class TransactionEnded(RuntimeError):
    """A command of a group committed or rolled back the shared transaction itself: what of the
    commands before it landed is unknown, so none may run again (it could run twice)."""


class _Refused:
    def __init__(self, error: Exception) -> None:
        self.error = error


class _Turn:
    """What a command's turn in its group came to."""

    def __init__(self, *, ran: bool, result: object = None, wrote: bool = False) -> None:
        self.ran = ran  # it ran to the end and the transaction holds it: the group's outcome is its own
        self.result = result  # its return value, or _Refused
        self.wrote = wrote


class _Group:
    def __init__(self) -> None:
        self.size = 0  # commands that joined
        self.waiting = 0  # joined and not yet through their turn
        self.open = True  # still taking commands
        self.failed = False  # nothing of it may commit: its commands run again alone
        self.ended: TransactionEnded | None = None  # a command ended the transaction itself
        self.committing = False  # COMMIT is sent: too late to take a command out
        self.ran = 0  # commands the transaction holds (or whose refusal rests on it)
        self.uow: UnitOfWork | None = None
        self.ready = asyncio.Event()  # the transaction is open (or could not be)
        self.idle = asyncio.Event()  # no command is waiting for its turn
        self.turn = asyncio.Lock()  # FIFO: commands run in the order they joined
        self.outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class GroupCommit:
    """Runs commands in shared transactions of at most ``max_size`` (1: each alone)."""

    def __init__(self, make_uow: Callable[[uuid.UUID | None], UnitOfWork], *, max_size: int) -> None:
        self._make_uow = make_uow
        self.max_size = max_size
        self._open: _Group | None = None
        self._in_flight = 0  # commands inside run(), grouped or not
        self._leaders: set[asyncio.Task[None]] = set()
        #: Counted for /metrics: commands that committed in a group of more than one, groups
        #: committed, and groups that failed (their commands ran again alone).
        self.grouped_commands = 0
        self.groups_committed = 0
        self.groups_failed = 0

    async def run(self, correlation_id: uuid.UUID, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
        # With nothing else in flight there is nobody to share with: the plain path, without a
        # group's task and events (measured: they cost a lone command more than they save).
        grouping = self.max_size > 1 and self._in_flight > 0
        self._in_flight += 1
        try:
            if grouping:
                group = self._join()
                turn = await self._take_turn(group, correlation_id, work)
                try:
                    await asyncio.shield(group.outcome)
                except _Failed:
                    pass  # run again alone, below
                except asyncio.CancelledError:
                    # Its caller gave up (a timeout) before the group committed: alone, nothing of
                    # it would land, so neither may it here; the others run again alone. Once
                    # COMMIT is sent, the outcome is as unknown as a lone command's would be.
                    if turn.wrote and not group.committing:
                        group.failed = True
                    raise
                else:
                    if isinstance(turn.result, _Refused):
                        raise turn.result.error
                    if turn.ran:
                        return cast(T, turn.result)
            return await retrying(lambda: self._make_uow(correlation_id), work)
        finally:
            self._in_flight -= 1

    def _join(self) -> _Group:
        group = self._open
        if group is None or not group.open:
            group = self._open = _Group()
            # A context of its own: a copy of the first joiner's would name that command's
            # correlation id on the leader's log lines.
            leader = asyncio.create_task(
                self._lead(group), name="group-commit", context=contextvars.Context()
            )
            self._leaders.add(leader)
            leader.add_done_callback(self._leaders.discard)
            leader.add_done_callback(lambda _: self._never_led(group))
        group.size += 1
        group.waiting += 1
        group.idle.clear()
        if group.size >= self.max_size:
            self._close(group)
        return group

    def _never_led(self, group: _Group) -> None:
        """A leader cancelled before it first ran (tasks cancelled wholesale) never reaches its
        ``finally``: its commands, waiting for the transaction, run alone instead."""
        if not group.ready.is_set():
            group.failed = True
            self._close(group)
            group.ready.set()
            self._settle(group, None)

    def _close(self, group: _Group) -> None:
        group.open = False
        if self._open is group:
            self._open = None

    async def _take_turn(
        self, group: _Group, correlation_id: uuid.UUID, work: Callable[[UnitOfWork], Awaitable[T]]
    ) -> _Turn:
        try:
            async with group.turn:
                await group.ready.wait()
                uow = group.uow
                if group.failed or group.ended or uow is None:
                    return _Turn(ran=False)
                try:
                    conn = uow.conn
                    written, failed, ends = writes(conn), failures(conn), transaction_ends(conn)
                except Exception:  # the connection is lost (or invalidated): nothing will commit
                    group.failed = True
                    return _Turn(ran=False)
                error: BaseException | None = None
                try:
                    with uow.serving(correlation_id):
                        result = await work(uow)
                except BaseException as exc:
                    error = exc
                wrote = True  # unless known otherwise
                try:
                    await self._check_still_open(group, uow, ends)
                    wrote = writes(conn) > written
                    if failures(conn) != failed:
                        # A statement the server refused (or one cancelled) aborted the
                        # transaction: COMMIT would roll everything back without a word.
                        group.failed = True
                except Exception:  # the connection is lost (or invalidated): nothing will commit
                    group.failed = True
                if error is None:
                    if group.failed or group.ended:
                        return _Turn(ran=False)
                    group.ran += 1
                    return _Turn(ran=True, result=result, wrote=wrote)
                if group.failed or group.ended:
                    pass  # the group is lost anyway (its leader was cancelled, ...)
                elif isinstance(error, Exception) and not isinstance(error, DBAPIError) and not wrote:
                    group.ran += 1
                    return _Turn(ran=False, result=_Refused(error))  # before any write: nothing to undo
                else:
                    # Failed after a write, conflicted, cancelled: the transaction may hold part
                    # of this command, so the group must not commit. The command is answered by
                    # its run alone; a cancellation goes on up.
                    group.failed = True
                if not isinstance(error, Exception):
                    raise error
                return _Turn(ran=False)
        finally:
            group.waiting -= 1
            if group.waiting == 0:
                group.idle.set()

    @staticmethod
    async def _check_still_open(group: _Group, uow: UnitOfWork, ends: int) -> None:
        if group.ended is not None:
            return
        if (
            uow.transaction_open
            and transaction_ends(uow.conn) == ends
            and not await left_transaction(uow.conn)
        ):
            return
        group.ended = TransactionEnded(
            "a command of this group ended the shared transaction itself (COMMIT or ROLLBACK):"
            " what the commands before it wrote may have landed, so none of them runs again"
        )
        log.error("group commit: %s", group.ended)

    async def _lead(self, group: _Group) -> None:
        """Opens the group's transaction, waits until every command that joined has run, commits."""
        commit_error: BaseException | None = None
        try:
            async with self._make_uow(None) as uow:
                group.uow = uow
                count_writes(uow.conn)
                try:
                    group.ready.set()
                    try:
                        while group.waiting:
                            await group.idle.wait()
                    except asyncio.CancelledError:
                        # Nobody is left to commit (shutdown): the group rolls back, and its
                        # commands run again alone. The one in its turn still uses the
                        # connection, so it stays open until that turn is over.
                        group.failed = True
                        self._close(group)
                        while group.waiting:
                            with contextlib.suppress(asyncio.CancelledError):
                                await group.idle.wait()
                        raise
                    # No await between the check above and here: nobody can join in between.
                    self._close(group)
                    if uow.conn.invalidated:
                        group.failed = True  # known: nothing of it can land
                    if not group.failed and not group.ended:
                        group.committing = True
                        try:
                            await uow.commit()
                        except DBAPIError as exc:
                            # The server answered COMMIT with an error (a deferred constraint): it
                            # rolled back, known for sure, so the commands run again alone. Only a
                            # connection lost during COMMIT leaves the outcome unknown.
                            if exc.connection_invalidated:
                                commit_error = exc
                            raise
                        except asyncio.CancelledError:
                            commit_error = ConnectionAbortedError(
                                "the group's COMMIT was interrupted: whether it landed is unknown"
                            )
                            raise
                        except BaseException as exc:
                            commit_error = exc
                            raise
                finally:
                    with contextlib.suppress(Exception):  # a connection lost has no info left
                        count_writes(uow.conn, on=False)  # back to the pool uncounted
        except BaseException:
            if commit_error is None:
                group.failed = True  # could not connect, or rolling back failed: nothing landed
        finally:
            self._close(group)
            group.ready.set()
            self._settle(group, commit_error)

    def _settle(self, group: _Group, commit_error: BaseException | None) -> None:
        error = group.ended or commit_error
        if group.outcome.done():
            return
        if error is None and not group.failed:
            self.groups_committed += 1
            GROUP_SIZE.observe(group.ran)
            if group.ran > 1:
                self.grouped_commands += group.ran
            group.outcome.set_result(None)
            return
        if error is None:
            self.groups_failed += 1
            GROUPS_FAILED.inc()
        group.outcome.set_exception(error or _Failed())
        group.outcome.exception()  # retrieved: nobody may be left to await it (all cancelled)

    async def aclose(self) -> None:
        """Waits for groups in flight (at shutdown)."""
        if self._leaders:
            await asyncio.gather(*self._leaders, return_exceptions=True)
