"""The database URLs operators may give a service: one host, or a primary and its standbys in
SQLAlchemy's multi-host form (README "Running at city scale")."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from services.membership.app import MembershipSettings
from shared.runtime import loopback_without_tls

MULTI = "postgresql+asyncpg://membership@/membership?host=127.0.0.1:5432&host=127.0.0.1:5433"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+asyncpg://u:p@127.0.0.1:5432/db", {"ssl": False}),
        (MULTI + "&target_session_attrs=read-write", {"ssl": False}),
        # One remote host among them: the driver's default (TLS when the server offers it).
        ("postgresql+asyncpg://u@/db?host=127.0.0.1:5432&host=db-2.internal:5432", {}),
        ("postgresql+asyncpg://u@db.internal:5432/db", {}),
        # The URL's own choice always wins.
        (MULTI + "&ssl=require", {}),
    ],
)
def test_tls_is_left_out_only_when_every_host_is_loopback(url: str, expected: dict[str, bool]) -> None:
    assert loopback_without_tls(url) == expected


def test_a_separate_password_goes_into_a_multi_host_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMBERSHIP_DATABASE_URL", MULTI + "&target_session_attrs=read-write")
    monkeypatch.setenv("MEMBERSHIP_DATABASE_PASSWORD", "p@ss/w%rd")
    url = make_url(MembershipSettings().database_url)
    assert url.password == "p@ss/w%rd"
    assert url.query["host"] == ("127.0.0.1:5432", "127.0.0.1:5433")
    assert url.query["target_session_attrs"] == "read-write"


def test_a_remote_query_host_keeps_tls_even_behind_a_loopback_netloc() -> None:
    assert loopback_without_tls("postgresql+asyncpg://u:p@localhost/db?host=db.prod:5432") == {}
