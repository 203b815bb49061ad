"""Which consumer failures are waited out (transient) and which count towards the dead-letter topic."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.eventstore import ConcurrencyError
from shared.inbox import is_transient


class DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def db_error(sqlstate: str) -> DBAPIError:
    return DBAPIError("SELECT 1", None, DriverError(sqlstate))


@pytest.mark.parametrize(
    "code", ["40001", "40P01", "55P03", "57014", "57P01", "57P03", "08006", "53300", "25006"]
)
def test_database_conditions_that_pass_are_transient(code: str) -> None:
    assert is_transient(db_error(code))


@pytest.mark.parametrize("code", ["22P02", "23505", "42703"])
def test_errors_about_the_data_or_the_code_are_not(code: str) -> None:
    assert not is_transient(db_error(code))
    assert not is_transient(IntegrityError("INSERT", None, DriverError(code)))


def test_connection_loss_pool_timeout_and_version_conflicts_are_transient() -> None:
    assert is_transient(ConnectionResetError())
    assert is_transient(PoolTimeout())
    assert is_transient(ConcurrencyError("s", 1))
    assert not is_transient(ValueError("a bug"))


def test_no_primary_yet_during_a_failover_is_transient() -> None:
    """A multi-host URL with target_session_attrs=read-write, every host up and none promoted
    yet: asyncpg's TargetServerAttributeNotMatched, raised under SQLAlchemy's own error type.
    Not transient, a consumer would dead-letter real events during a failover."""
    import asyncpg
    from sqlalchemy.exc import InternalError

    class Translated(Exception):
        pass

    driver = asyncpg.TargetServerAttributeNotMatched("None of the hosts match")
    translated = Translated("TargetServerAttributeNotMatched")
    translated.__cause__ = driver
    assert is_transient(InternalError("connect", None, translated))
    assert not is_transient(InternalError("connect", None, Translated("something else")))
