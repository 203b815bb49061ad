"""Adversarial review of issue 17 at the counter (membership on its real database and broker).

Every test here is an attack. Those marked as defects failed on the branch this was written on (now fixed)
(review17, from main bf1e302) and say why; the others are regression guards for attacks the
code withstood, and pass.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa

from services.membership.tables import member_identities, paper_receipts
from shared.tables import events
from tests.identifiers import card_number, check_character, luhn_complete, national_id
from tests.integration.membership.conftest import Service
from tests.integration.membership.support import (
    COUNSELOR,
    INTEGRATOR,
    STAFF,
    SUPERVISOR,
    assert_nothing_personal_left,
    assert_problem,
    envelopes,
    new_member,
    phone,
    post,
    published,
)

pytestmark = pytest.mark.integration


def full_width(text: str) -> str:
    """What a Chinese IME types: ASCII letters, digits and '-' as their full-width forms."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _join_body(union_id: str, nid: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "union_id": union_id,
        "full_name": "李四",
        "gender": "male",
        "birth_date": "1980-05-20",
        "national_id": nid,
        "joined_on": "2010-03-01",
    }
    body.update(over)
    return body


async def _count(service: Service, table: sa.Table, *where: Any) -> int:
    async with service.runtime.engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table).where(*where)) or 0)


# --- national ID: hostile spellings (withstood) ----------------------------------------------


async def test_passing_hostile_national_id_spellings_are_422_naming_the_field_and_write_nothing(
    service: Service, tree: dict[str, str]
) -> None:
    """PASSING regression: full-width digits, inner spaces, a check X in the wrong place, a
    number, null, a list, 41 characters, an impossible birth date with a correct check character:
    all 422 naming national_id (or birth_date for the mismatch), nothing stored."""
    good = national_id(date(1980, 5, 20))
    service.secrets.append(good)
    body17 = "1101131980022" + "0011"  # 17 digits: born 1980-02-20
    bad_date17 = "110113" + "19800231" + "001"  # 31 February, with its correct check character
    before = await _count(service, events)
    cases: list[tuple[Any, str]] = [
        (full_width(good), "national_id"),
        (good[:6] + " " + good[6:14] + " " + good[14:], "national_id"),
        ("X" + good[1:], "national_id"),
        (body17 + "Y", "national_id"),
        (int(good[:17]), "national_id"),
        (None, "national_id"),
        ([good], "national_id"),
        (good + "0" * 23, "national_id"),
        (good + "\u200b", "national_id"),  # a zero-width space pasted from a chat
    ]
    for value, field in cases:
        r = await post(service, "/v1/members", _join_body(tree["grassroots"], value))
        assert_problem(r, 422, field)
        assert good not in r.text
    r = await post(
        service,
        "/v1/members",
        _join_body(tree["grassroots"], bad_date17 + check_character(bad_date17), birth_date="1980-02-28"),
    )
    assert assert_problem(r, 422, "birth_date")["code"] == "national_id_birth_date_mismatch"
    assert await _count(service, events) == before


async def test_passing_a_lower_case_check_x_is_stored_upper_and_found_either_way(
    service: Service, tree: dict[str, str]
) -> None:
    """PASSING regression: ``x`` in the check position is a valid ID (normalised to X), a second
    join spelling it ``X`` is the same person (409), lookup finds it with either case and with
    surrounding whitespace."""
    nid = next(n for n in (national_id(date(1981, 7, 9), serial=s) for s in range(500)) if n.endswith("X"))
    service.secrets.append(nid)
    first = await post(
        service,
        "/v1/members",
        _join_body(tree["grassroots"], " " + nid.lower() + "\t", birth_date="1981-07-09"),
    )
    assert first.status_code == 201, first.text
    again = await post(service, "/v1/members", _join_body(tree["grassroots"], nid, birth_date="1981-07-09"))
    assert assert_problem(again, 409, "national_id")["code"] == "duplicate_national_id"
    for spelling in (nid, nid.lower(), f"  {nid} "):
        found = await post(service, "/v1/members/lookup", {"national_id": spelling})
        assert found.status_code == 200 and found.json()["member_id"] == first.json()["member_id"], found.text
    assert_problem(
        await post(service, "/v1/members/lookup", {"national_id": nid[:-1] + "1"}), 422, "national_id"
    )


# --- card numbers (withstood) -----------------------------------------------------------------


async def test_passing_card_numbers_with_separators_are_one_card_and_bad_ones_are_422(
    service: Service, tree: dict[str, str]
) -> None:
    """PASSING regression: spaces and dashes are dropped (the same number spelt two ways is the
    same card: re-registering it to another member is 409), a wrong Luhn digit, full-width digits,
    20 digits or a JSON number are 422 invalid_card_number / naming card_number."""
    a = await new_member(service, tree["grassroots"])
    b = await new_member(service, tree["grassroots"])
    number = card_number()
    service.secrets.append(number)
    spaced = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    for value in (wrong, full_width(number), luhn_complete("6" * 19), int(number), full_width("4" * 16)):
        r = await post(service, f"/v1/members/{a['member_id']}/card", {"card_number": value})
        assert_problem(r, 422, "card_number")
        assert number not in r.text
    ok = await post(service, f"/v1/members/{a['member_id']}/card", {"card_number": spaced})
    assert ok.status_code == 201 and ok.json()["card_last4"] == number[-4:], ok.text
    dashed = "-".join(number[i : i + 4] for i in range(0, len(number), 4))
    taken = await post(service, f"/v1/members/{b['member_id']}/card", {"card_number": dashed})
    assert assert_problem(taken, 409, "card_number")["code"] == "card_number_taken"
    replace = await post(
        service, f"/v1/members/{a['member_id']}/card/replace", {"card_number": "4111-1111-1111-1112"}
    )
    assert assert_problem(replace, 422, "card_number")["code"] == "invalid_card_number"


# --- paper enrolments -------------------------------------------------------------------------


def _paper(starts_on: str, receipt: str, paid_on: str | None = None) -> dict[str, Any]:
    return {
        "plan_code": "accident_injury",
        "shares": 1,
        "starts_on": starts_on,
        "paper": {"receipt_reference": receipt, "paid_on": paid_on or starts_on},
    }


async def test_was_defect_a_paper_enrolment_paid_on_the_recording_day_is_listed_as_recorded_late(
    service: Service, tree: dict[str, str]
) -> None:
    """Fixed after the review. Paid at the counter and recorded the same day is *not* late (the
    command's answer and the PlanEnrolled event say ``recorded_late: false``, bf1e302), but
    GET /members/{id}/enrollments and GET /members/{id} derive it from "has a receipt row"
    (views._enrollment_row: ``paid_on is not None``) and answer ``true``. The counter screen
    would then flag an on-time enrolment as a late, fraud-prone one, disagreeing with the event
    claims decides from."""
    m = await new_member(service, tree["grassroots"], card=True)
    path = f"/v1/members/{m['member_id']}/enrollments"
    made = await post(service, path, _paper("2016-08-10", f"JG-{uuid.uuid4().hex[:10]}"), SUPERVISOR)
    assert made.status_code == 201 and made.json()["recorded_late"] is False, made.text
    [event] = [
        e for e in envelopes(await published(service), m["member_id"]) if e["event_type"] == "PlanEnrolled"
    ]
    assert event["data"]["recorded_late"] is False
    [listed] = (await service.client.get(path, headers=STAFF)).json()["items"]
    assert listed["recorded_late"] is False, listed
    [detail] = (await service.client.get(f"/v1/members/{m['member_id']}", headers=STAFF)).json()[
        "enrollments"
    ]
    assert detail["recorded_late"] is False, detail


async def test_passing_concurrent_paper_enrolments_on_one_receipt_record_exactly_one(
    service: Service, tree: dict[str, str]
) -> None:
    """PASSING regression: five supervisors type the same receipt for five members at once:
    exactly one 201, four 409 receipt_already_used naming paper.receipt_reference, exactly one
    PlanEnrolled stored and one receipt row; never a 500."""
    members = [await new_member(service, tree["grassroots"], card=True) for _ in range(5)]
    receipt = f"JG-{uuid.uuid4().hex[:10]}"
    answers = await asyncio.gather(
        *(
            post(
                service,
                f"/v1/members/{m['member_id']}/enrollments",
                _paper("2016-07-01", receipt),
                SUPERVISOR,
            )
            for m in members
        )
    )
    codes = sorted(r.status_code for r in answers)
    assert codes == [201, 409, 409, 409, 409], [r.text for r in answers]
    for r in answers:
        if r.status_code == 409:
            assert assert_problem(r, 409, "paper.receipt_reference")["code"] == "receipt_already_used"
    assert await _count(service, paper_receipts, paper_receipts.c.receipt_reference == receipt) == 1
    ids = [uuid.UUID(m["member_id"]) for m in members]
    stored = await _count(
        service,
        events,
        events.c.event_type == "PlanEnrolled",
        events.c.stream_id.in_([str(i) for i in ids]),
    )
    assert stored == 1


async def test_was_defect_one_receipt_typed_in_another_case_or_spacing_pays_for_a_second_enrolment(
    service: Service, tree: dict[str, str]
) -> None:
    """Fixed after the review. "one receipt pays for one enrolment" was judged on the text typed,
    so the same paper receipt typed ``jg-2016-000417`` or ``JG 2016 000417`` or with full-width
    characters (a Chinese IME) buys a second backdated enrolment. Receipt numbers are typed by
    hand from paper; the reference needs the same normalisation the other typed identifiers get
    (trim, upper-case, drop separators, NFKC) before the unique index judges it."""
    first = await new_member(service, tree["grassroots"], card=True)
    receipt = f"JG-2016-{uuid.uuid4().int % 10**6:06d}"
    ok = await post(
        service, f"/v1/members/{first['member_id']}/enrollments", _paper("2016-07-01", receipt), SUPERVISOR
    )
    assert ok.status_code == 201, ok.text
    spellings = [
        receipt.lower(),
        receipt.replace("-", " "),
        receipt.replace("-", ""),
        full_width(receipt),
    ]
    for spelling in spellings:
        other = await new_member(service, tree["grassroots"], card=True)
        r = await post(
            service,
            f"/v1/members/{other['member_id']}/enrollments",
            _paper("2016-07-01", spelling),
            SUPERVISOR,
        )
        assert r.status_code == 409, f"{spelling!r} reused the receipt: {r.status_code} {r.text}"


async def test_a_paper_enrolment_voided_from_its_first_day_frees_its_receipt_a_later_cancel_does_not(
    service: Service, tree: dict[str, str]
) -> None:
    """Found as a product question: a supervisor records a paper enrolment with the wrong number
    of shares and has to record the corrected one from the same receipt. Decided: cancelling it
    from its first day (``cancelled_on`` = its start: it never covered a day) frees the receipt;
    cancelled any later it covered days, and a second enrolment on that receipt would pay twice
    for them, so the receipt stays used."""
    m = await new_member(service, tree["grassroots"], card=True)
    path = f"/v1/members/{m['member_id']}/enrollments"
    receipt = f"JG-{uuid.uuid4().hex[:10]}"
    wrong = await post(service, path, {**_paper("2016-07-01", receipt), "shares": 2}, SUPERVISOR)
    assert wrong.status_code == 201, wrong.text
    cancel = await post(
        service,
        f"{path}/{wrong.json()['enrollment_id']}/cancel",
        {"reason": "typed 2 shares, paid for 1", "cancelled_on": "2016-07-01"},
    )
    assert cancel.status_code == 200, cancel.text
    corrected = await post(service, path, _paper("2016-07-01", receipt), SUPERVISOR)
    assert corrected.status_code == 201, corrected.text

    # cancelled today (2016-08-10) it had covered July: the receipt stays used
    cancel = await post(service, f"{path}/{corrected.json()['enrollment_id']}/cancel", {"reason": "left"})
    assert cancel.status_code == 200, cancel.text
    again = await post(service, path, _paper("2016-07-01", receipt), SUPERVISOR)
    assert again.status_code == 409 and again.json()["code"] == "receipt_already_used", again.text


async def test_passing_hostile_paper_bodies_are_4xx_naming_the_field_and_write_nothing(
    service: Service, tree: dict[str, str]
) -> None:
    """PASSING regression: wrong types, over-long and blank receipt references, a datetime
    paid_on, extra fields, paper: [] / "yes"; and the roles (integrator, counselor, staff) that
    may not record paper. Each a problem+json naming the field; no event, no receipt row."""
    m = await new_member(service, tree["grassroots"], card=True)
    path = f"/v1/members/{m['member_id']}/enrollments"
    before = (await _count(service, events), await _count(service, paper_receipts))
    base = _paper("2016-07-01", "JG-1")
    bodies: list[tuple[dict[str, Any], str]] = [
        (
            {**base, "paper": {"receipt_reference": "R" * 41, "paid_on": "2016-07-01"}},
            "paper.receipt_reference",
        ),
        ({**base, "paper": {"receipt_reference": "   ", "paid_on": "2016-07-01"}}, "paper.receipt_reference"),
        ({**base, "paper": {"receipt_reference": 417, "paid_on": "2016-07-01"}}, "paper.receipt_reference"),
        (
            {**base, "paper": {"receipt_reference": "R1", "paid_on": "2016-07-01T00:00:00+08:00"}},
            "paper.paid_on",
        ),
        ({**base, "paper": {"receipt_reference": "R1", "paid_on": "2016-02-30"}}, "paper.paid_on"),
        ({**base, "paper": {"receipt_reference": "R1", "paid_on": "2016-07-01", "by": "x"}}, "paper.by"),
        ({**base, "paper": {"receipt_reference": "R1"}}, "paper.paid_on"),
        ({**base, "paper": []}, "paper"),
        ({**base, "paper": "yes"}, "paper"),
        (
            {
                **base,
                "paper": {"receipt_reference": "R1", "paid_on": "0001-01-01"},
                "starts_on": "0001-01-01",
            },
            "",
        ),
    ]
    for body, field in bodies:
        r = await post(service, path, body, SUPERVISOR)
        assert 400 <= r.status_code < 500, f"{body}: {r.status_code} {r.text}"
        assert r.headers["content-type"].startswith("application/problem+json")
        if field:
            assert_problem(r, 422, field)
    for who in (STAFF, INTEGRATOR, COUNSELOR):
        r = await post(service, path, base, who)
        assert r.status_code == 403, r.text
    assert (await _count(service, events), await _count(service, paper_receipts)) == before


# --- phone changes ----------------------------------------------------------------------------


async def test_passing_two_members_changing_to_one_number_at_once_both_succeed_with_one_event_each(
    service: Service, tree: dict[str, str]
) -> None:
    """PASSING regression: a household shares one phone (the index is not unique, by design);
    two concurrent changes to the same number both answer 200 changed, each member's vault row
    holds it, each stream one MemberPhoneChanged without the number."""
    a = await new_member(service, tree["grassroots"])
    b = await new_member(service, tree["grassroots"])
    shared = phone()
    service.secrets.append(shared)
    answers = await asyncio.gather(
        *(post(service, f"/v1/members/{m['member_id']}/contact", {"phone": shared}) for m in (a, b))
    )
    assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
    assert all(r.json()["changed"] is True for r in answers)
    assert shared not in "".join(r.text for r in answers)
    async with service.runtime.engine.connect() as conn:
        indexes = (
            (
                await conn.execute(
                    sa.select(member_identities.c.phone_index).where(
                        member_identities.c.member_id.in_(
                            [uuid.UUID(a["member_id"]), uuid.UUID(b["member_id"])]
                        )
                    )
                )
            )
            .scalars()
            .all()
        )
    assert indexes == [service.vault.phone_index(shared)] * 2
    messages = await published(service)
    for m in (a, b):
        changes = [e for e in envelopes(messages, m["member_id"]) if e["event_type"] == "MemberPhoneChanged"]
        assert len(changes) == 1 and shared not in json.dumps(changes)


async def test_passing_one_member_changed_concurrently_ends_with_one_event_per_real_change(
    service: Service, tree: dict[str, str]
) -> None:
    """PASSING regression: six concurrent changes of one member to the same new number: all
    answer 2xx (or 409 concurrent_update), exactly one MemberPhoneChanged, the vault holds it."""
    m = await new_member(service, tree["grassroots"])
    new = phone()
    service.secrets.append(new)
    path = f"/v1/members/{m['member_id']}/contact"
    answers = await asyncio.gather(*(post(service, path, {"phone": new}) for _ in range(6)))
    assert all(r.status_code in (200, 409) for r in answers), [r.text for r in answers]
    assert sum(1 for r in answers if r.status_code == 200 and r.json()["changed"]) == 1
    async with service.runtime.engine.connect() as conn:
        n = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(events)
            .where(events.c.event_type == "MemberPhoneChanged", events.c.stream_id == m["member_id"])
        )
        held = await service.vault.phone_of(conn, uuid.UUID(m["member_id"]))
    assert n == 1 and held == new


async def test_passing_hostile_phones_are_422_naming_phone(service: Service, tree: dict[str, str]) -> None:
    """PASSING regression: full-width digits, a number, 41 characters, letters, 6 digits, an
    empty string, a newline-only string: 422 naming phone, no event."""
    m = await new_member(service, tree["grassroots"])
    path = f"/v1/members/{m['member_id']}/contact"
    before = await _count(service, events)
    for value in (full_width("13912345678"), 13912345678, "1" * 41, "139-CALL-ME", "123456", "", "\n", None):
        assert_problem(await post(service, path, {"phone": value}), 422, "phone")
    assert await _count(service, events) == before


# --- the plan's reporting limit -----------------------------------------------------------------


async def test_was_defect_reporting_limit_months_true_is_taken_as_one_month(service: Service) -> None:
    """Fixed after the review. ``"reporting_limit_months": true`` (a wrong JSON type) was taken,
    stored as 1 (pydantic's lax int takes a bool), so one mistyped catalogue edit makes claims
    refuse every injury reported more than a month after it happened. ``shares`` already uses
    StrictInt for this reason; the plan's integer fields do not (term_months, waiting_days,
    min_age... have the same hole; reporting_limit_months is the one issue 17 added)."""
    code = f"plan_{uuid.uuid4().hex[:8]}"
    plan = {
        "code": code,
        "name": "reporting limit probe",
        "benefit": "paid",
        "claim_kind": "injury",
        "reporting_limit_months": True,
    }
    r = await service.client.put(f"/v1/plans/{code}", json=plan, headers=STAFF)
    got = (await service.client.get(f"/v1/plans/{code}", headers=STAFF)).json()
    assert r.status_code == 422, (
        f"{r.status_code}: stored reporting_limit_months={got.get('reporting_limit_months')}"
    )
    assert_problem(r, 422, "reporting_limit_months")


async def test_nothing_personal_left(service: Service, tree: dict[str, str]) -> None:
    await assert_nothing_personal_left(service, tree["grassroots"])
