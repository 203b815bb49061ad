"""Counseling settings: the notes key ring, production refusals, and token grants with subjects."""

from __future__ import annotations

import base64
import json
import os
import secrets

import pytest
from pydantic import ValidationError

from services.counseling.settings import LOCAL_NOTES_KEY, CounselingSettings
from shared.auth import Role, TokenAuthority
from shared.settings import LOCAL_GRANTS, LOCAL_KEY, Grant, parse_grants


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def production(**overrides: str) -> CounselingSettings:
    values = {
        "mode": "production",
        "api_tokens": json.dumps({secrets.token_hex(32): {"role": "counselor", "subject": "c-1"}}),
        "pii_key": key(),
        "metrics_token": secrets.token_hex(16),
        "COUNSELING_DATABASE_URL": "postgresql+asyncpg://counseling:s3cret@db:5432/counseling",
        "COUNSELING_NOTES_KEYS": json.dumps({"2026-a": key()}),
        "COUNSELING_NOTES_KEY_ID": "2026-a",
    }
    return CounselingSettings(**(values | overrides))


def test_development_defaults_work_and_round_trip_notes() -> None:
    s = CounselingSettings()
    ring = s.notes_key_ring()
    sealed = ring.encrypt("a note", "ctx")
    assert s.port == 8004 and s.topic == "counseling.events" and ring.decrypt(sealed, "ctx") == "a note"


def test_production_starts_with_real_keys() -> None:
    assert production().notes_key_ring().current == "2026-a"


@pytest.mark.parametrize("local", [LOCAL_NOTES_KEY, LOCAL_KEY])
def test_production_refuses_a_local_notes_key_even_beside_a_real_one(local: str) -> None:
    with pytest.raises(ValidationError, match="COUNSELING_NOTES_KEYS must not hold a local"):
        production(COUNSELING_NOTES_KEYS=json.dumps({"old": local, "2026-a": key()}))


def test_production_refuses_the_default_ring() -> None:
    with pytest.raises(ValidationError, match="COUNSELING_NOTES_KEY"):
        CounselingSettings(mode="production")


def test_production_refuses_the_pii_key_as_a_notes_key() -> None:
    shared_key = key()
    with pytest.raises(ValidationError, match="UNION_PII_KEY"):
        production(pii_key=shared_key, COUNSELING_NOTES_KEYS=json.dumps({"2026-a": shared_key}))


@pytest.mark.parametrize(
    ("keys", "current"),
    [("not json", "a"), ("{}", "a"), ('{"a": "c2hvcnQ="}', "a"), (json.dumps({"a": key()}), "b")],
)
def test_bad_rings_are_refused_naming_ids_never_keys(keys: str, current: str) -> None:
    with pytest.raises(ValidationError) as err:
        production(COUNSELING_NOTES_KEYS=keys, COUNSELING_NOTES_KEY_ID=current)
    assert "c2hvcnQ=" not in str(err.value)


def test_a_real_key_never_appears_in_the_settings_repr() -> None:
    s = production()
    assert s.notes_keys not in repr(s)


# --- grants with a subject (shared/settings.py, shared/auth.py) -------------------------------------


def test_token_entries_may_name_a_subject_and_plain_entries_keep_working() -> None:
    grants = parse_grants(
        json.dumps(
            {"t1": "staff", "t2": {"role": "counselor", "subject": "dr-wang"}, "t3": {"role": "supervisor"}}
        )
    )
    assert grants == {"t1": Grant("staff"), "t2": Grant("counselor", "dr-wang"), "t3": Grant("supervisor")}
    authority = TokenAuthority(grants)
    counselor = authority.authenticate("Bearer t2")
    staff = authority.authenticate("Bearer t1")
    assert counselor.role is Role.COUNSELOR and counselor.subject == "dr-wang"
    assert staff.role is Role.STAFF and staff.subject.startswith("staff:") and "t1" not in staff.subject


@pytest.mark.parametrize(
    "entry",
    [{"subject": "x"}, {"role": "staff", "colour": "red"}, {"role": "staff", "subject": 3}, ["staff"]],
)
def test_malformed_grants_are_refused(entry: object) -> None:
    with pytest.raises(ValueError, match="entry #1"):
        parse_grants(json.dumps({"t": entry}))


def test_the_local_counsellor_tokens_are_two_people() -> None:
    authority = TokenAuthority(LOCAL_GRANTS)
    one = authority.authenticate("Bearer local-counselor-token")
    two = authority.authenticate("Bearer local-counselor-2-token")
    assert (one.subject, two.subject) == ("counselor-1", "counselor-2")
    assert one.role is two.role is Role.COUNSELOR
