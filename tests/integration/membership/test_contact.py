"""Phone changes: re-encrypted in the vault with a new blind index, an event without the number,
idempotent (the same number again is no change; an Idempotency-Key replays the answer)."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from services.membership.tables import member_identities
from tests.integration.membership.conftest import Service
from tests.integration.membership.support import (
    INTEGRATOR,
    STAFF,
    assert_nothing_personal_left,
    assert_problem,
    envelopes,
    new_id,
    new_member,
    phone,
    post,
    published,
    stored_event_count,
)

pytestmark = pytest.mark.integration


async def _identity_row(service: Service, member_id: str) -> dict[str, object]:
    async with service.runtime.engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    sa.select(member_identities).where(member_identities.c.member_id == uuid.UUID(member_id))
                )
            )
            .mappings()
            .one()
        )
    return dict(row)


async def test_a_phone_change_reencrypts_updates_the_index_and_publishes_no_number(
    service: Service, tree: dict[str, str]
) -> None:
    m = await new_member(service, tree["grassroots"])
    before = await _identity_row(service, m["member_id"])
    assert before["phone_index"] is not None  # a phone given when joining is indexed too
    new = phone()
    service.secrets.append(new)
    path = f"/v1/members/{m['member_id']}/contact"
    r = await post(service, path, {"phone": new[:3] + " " + new[3:7] + "-" + new[7:]})
    assert r.status_code == 200, r.text
    assert r.json() == {"member_id": m["member_id"], "phone": "*" * 7 + new[-4:], "changed": True}
    assert new not in r.text

    after = await _identity_row(service, m["member_id"])
    assert after["phone_enc"] != before["phone_enc"] and new not in str(after["phone_enc"])
    assert after["phone_index"] != before["phone_index"]
    assert after["phone_index"] == service.vault.phone_index(new)
    detail = (await service.client.get(f"/v1/members/{m['member_id']}", headers=STAFF)).json()
    assert detail["phone"] == "*" * 7 + new[-4:]

    messages = envelopes(await published(service), m["member_id"])
    changed = [e for e in messages if e["event_type"] == "MemberPhoneChanged"]
    assert len(changed) == 1
    assert set(changed[0]["data"]) == {"member_id", "changed_on"}
    assert changed[0]["data"]["changed_on"] == "2016-08-10"  # the service's clock, Beijing date
    timeline = (await service.client.get(f"/v1/members/{m['member_id']}/timeline", headers=STAFF)).json()
    assert "MemberPhoneChanged" in [i["event_type"] for i in timeline["items"]]


async def test_the_same_phone_again_is_no_change_and_no_event(service: Service, tree: dict[str, str]) -> None:
    m = await new_member(service, tree["grassroots"])
    path = f"/v1/members/{m['member_id']}/contact"
    before = await stored_event_count(service)
    same = await post(service, path, {"phone": m["phone"]})
    assert same.status_code == 200 and same.json()["changed"] is False
    assert await stored_event_count(service) == before

    new = phone()
    service.secrets.append(new)
    assert (await post(service, path, {"phone": new})).json()["changed"] is True
    assert (await post(service, path, {"phone": new})).json()["changed"] is False
    assert await stored_event_count(service) == before + 1


async def test_a_member_without_a_phone_gets_one(service: Service, tree: dict[str, str]) -> None:
    m = await new_member(service, tree["grassroots"], with_phone=False)
    new = phone()
    service.secrets.append(new)
    r = await post(service, f"/v1/members/{m['member_id']}/contact", {"phone": new})
    assert r.status_code == 200 and r.json()["changed"] is True
    assert (await _identity_row(service, m["member_id"]))["phone_index"] == service.vault.phone_index(new)


async def test_an_idempotency_key_replays_the_answer(service: Service, tree: dict[str, str]) -> None:
    m = await new_member(service, tree["grassroots"])
    path = f"/v1/members/{m['member_id']}/contact"
    new = phone()
    service.secrets.append(new)
    headers = {**STAFF, "Idempotency-Key": str(uuid.uuid4())}
    first = await post(service, path, {"phone": new}, headers)
    before = await stored_event_count(service)
    again = await post(service, path, {"phone": new}, headers)
    assert again.status_code == 200 and again.json() == first.json() and first.json()["changed"] is True
    assert await stored_event_count(service) == before
    other = phone()
    service.secrets.append(other)
    assert_problem(await post(service, path, {"phone": other}, headers), 422, "Idempotency-Key")


async def test_contact_validation_and_roles(service: Service, tree: dict[str, str]) -> None:
    m = await new_member(service, tree["grassroots"])
    path = f"/v1/members/{m['member_id']}/contact"
    assert_problem(await post(service, path, {"phone": "call me"}), 422, "phone")
    assert_problem(await post(service, path, {}), 422, "phone")
    assert_problem(await post(service, path, {"phone": phone(), "email": "x"}), 422, "email")
    assert_problem(await post(service, f"/v1/members/{new_id()}/contact", {"phone": phone()}), 404)
    assert (await post(service, path, {"phone": phone()}, INTEGRATOR)).status_code == 403


async def test_nothing_personal_left(service: Service, tree: dict[str, str]) -> None:
    await assert_nothing_personal_left(service, tree["grassroots"])
