"""Production mode refuses every local default; development mode works out of the box."""

from __future__ import annotations

import base64
import json
import os
import secrets

import pytest
from pydantic import ValidationError

from services.claims.app import ClaimsSettings as Settings
from shared.settings import LOCAL_TOKENS

REAL_KEY = base64.b64encode(os.urandom(32)).decode()
REAL_DB = "postgresql+asyncpg://claims:s3cret@db:5432/claims"
GOOD_TOKEN = secrets.token_hex(32)  # what deploy/README.md generates (openssl rand -hex 32)


def test_development_defaults_use_the_documented_local_tokens() -> None:
    s = Settings()
    assert s.tokens() == LOCAL_TOKENS and s.port == 8002 and s.topic == "claims.events"


def test_production_refuses_local_tokens_key_and_password() -> None:
    with pytest.raises(ValidationError) as err:
        Settings(mode="production")
    text = str(err.value)
    assert "UNION_API_TOKENS" in text and "UNION_PII_KEY" in text and "CLAIMS_DATABASE_URL" in text
    assert "UNION_METRICS_TOKEN" in text


def test_production_refuses_a_local_token_mixed_into_real_ones() -> None:
    tokens = json.dumps({secrets.token_hex(32): "staff", "local-staff-token": "staff"})
    with pytest.raises(ValidationError, match="without the local tokens"):
        Settings(mode="production", api_tokens=tokens, pii_key=REAL_KEY, CLAIMS_DATABASE_URL=REAL_DB)


def test_production_starts_with_real_secrets() -> None:
    s = Settings(
        mode="production",
        api_tokens=json.dumps({GOOD_TOKEN: "staff"}),
        pii_key=REAL_KEY,
        metrics_token="a-real-metrics-token",
        CLAIMS_DATABASE_URL=REAL_DB,
    )
    assert s.tokens() == {GOOD_TOKEN: "staff"}
    assert len(s.key_bytes(s.pii_key)) == 32


def test_production_refuses_the_local_metrics_token() -> None:
    with pytest.raises(ValidationError, match="UNION_METRICS_TOKEN"):
        Settings(
            mode="production",
            api_tokens=json.dumps({"t-1": "staff"}),
            pii_key=REAL_KEY,
            metrics_token="local-metrics-token",
            CLAIMS_DATABASE_URL=REAL_DB,
        )


def _production(tokens: dict[str, str]) -> None:
    Settings(
        mode="production",
        api_tokens=json.dumps(tokens),
        pii_key=REAL_KEY,
        metrics_token=secrets.token_hex(32),
        CLAIMS_DATABASE_URL=REAL_DB,
    )


@pytest.mark.parametrize(
    "placeholder",
    [
        "<long random token>",  # deploy/README.md's snippet, as it stood
        "<another>",
        "{{ staff_token }}-0123456789abcdefghijklmnopqrstuvwxyz",
        "changeme-0123456789abcdefghijklmnopqrstuvwxyz",
        "CHANGE-ME-0123456789abcdefghijklmnopqrstuvwxyz",
        "REPLACE-ME-0123456789abcdefghijklmnopqrstuvwxyz",
        "example-token-0123456789abcdefghijklmnopqrstuvwxyz",
        "your-token-here-0123456789abcdefghijklmnopqrstuvwxyz",
        "x" * 64,
    ],
)
def test_production_refuses_placeholder_tokens(placeholder: str) -> None:
    with pytest.raises(ValidationError, match=r"token #2 \(role 'integrator'\)") as err:
        _production({GOOD_TOKEN: "staff", placeholder: "integrator"})
    assert placeholder not in str(err.value)  # the message names the token, never shows it


def test_production_refuses_short_tokens() -> None:
    short = secrets.token_hex(15)  # 30 random characters
    with pytest.raises(ValidationError, match="30 characters long; at least 32"):
        _production({short: "staff"})
    _production({secrets.token_urlsafe(24): "staff"})  # 32 characters is enough


def test_development_mode_keeps_accepting_short_tokens() -> None:
    assert Settings(api_tokens=json.dumps({"t-1": "staff"})).tokens() == {"t-1": "staff"}


def test_each_service_reads_its_own_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.membership.settings import MembershipSettings

    monkeypatch.setenv("MEMBERSHIP_PORT", "9101")
    monkeypatch.setenv("MEMBERSHIP_TOPIC", "m.topic")
    monkeypatch.setenv("MEMBERSHIP_DATABASE_URL", REAL_DB)
    monkeypatch.setenv("MEMBERSHIP_DATABASE_PASSWORD", "p@ss/word")
    monkeypatch.setenv("MEMBERSHIP_CLAIMS_TOPIC", "c.topic")
    monkeypatch.setenv("CLAIMS_HOST", "10.0.0.5")
    monkeypatch.setenv("CLAIMS_MEMBERSHIP_TOPIC", "m.topic")
    m = MembershipSettings()
    assert (m.port, m.topic, m.claims_topic, m.host) == (9101, "m.topic", "c.topic", "127.0.0.1")
    assert m.database_url == "postgresql+asyncpg://claims:p%40ss%2Fword@db:5432/claims"
    c = Settings()
    assert (c.port, c.host, c.membership_topic, c.topic) == (8002, "10.0.0.5", "m.topic", "claims.events")
    assert "claims-local" in c.database_url
