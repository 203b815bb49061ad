"""The Jing card through HTTP: issue, cancel, replace. On the real PostgreSQL and Kafka."""

from __future__ import annotations

import pytest

from tests.identifiers import with_wrong_check
from tests.integration.membership.conftest import Service
from tests.integration.membership.support import (
    STAFF,
    assert_nothing_personal_left,
    assert_problem,
    card_number,
    new_id,
    new_member,
    post,
)

pytestmark = pytest.mark.integration


# --- card -------------------------------------------------------------------------------------


async def test_card_issue_cancel_replace(service: Service, tree: dict[str, str]) -> None:
    m = await new_member(service, tree["grassroots"])
    base = f"/v1/members/{m['member_id']}/card"
    first = card_number()
    service.secrets.append(first)
    r = await post(service, base, {"card_number": first, "issued_on": "2013-04-01"})
    assert r.status_code == 201 and r.json() == {"card_last4": first[-4:], "issued_on": "2013-04-01"}
    assert first not in r.text

    assert_problem(await post(service, base, {"card_number": card_number()}), 409)
    assert_problem(await post(service, base, {"card_number": "1234-5678"}), 422, "card_number")
    typo = assert_problem(
        await post(service, base, {"card_number": with_wrong_check(card_number())}), 422, "card_number"
    )
    assert typo["code"] == "invalid_card_number"
    assert_problem(await post(service, f"/v1/members/{new_id()}/card", {"card_number": card_number()}), 404)

    second = card_number()
    service.secrets.append(second)
    replaced = await post(service, f"{base}/replace", {"card_number": second, "replaced_on": "2015-02-01"})
    assert replaced.status_code == 201
    assert (
        replaced.json()["card_last4"] == second[-4:] and replaced.json()["replaced_card_last4"] == first[-4:]
    )

    cancelled = await post(service, f"{base}/cancel", {"reason": "lost"})
    assert cancelled.status_code == 200 and cancelled.json()["card_last4"] == second[-4:]
    assert_problem(await post(service, f"{base}/cancel", {}), 409)
    assert_problem(await service.client.post(f"{base}/cancel", headers=STAFF), 409)  # no body at all

    other = await new_member(service, tree["grassroots"])
    taken = await post(service, f"/v1/members/{other['member_id']}/card", {"card_number": second})
    assert_problem(taken, 409, "card_number")

    detail = (await service.client.get(f"/v1/members/{m['member_id']}", headers=STAFF)).json()
    assert detail["card"] is None
    assert [(c["card_last4"], c["status"], c["cancel_reason"]) for c in detail["cards"]] == [
        (first[-4:], "cancelled", "replaced"),
        (second[-4:], "cancelled", "lost"),
    ]


# --- last: nothing personal ever left the service ---------------------------------------------


async def test_no_personal_data_on_kafka_in_events_or_logs(service: Service, tree: dict[str, str]) -> None:
    await assert_nothing_personal_left(service, tree["grassroots"])
