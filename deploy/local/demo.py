"""`make demo`: the seed story, walked through the public HTTP APIs of every service.

A member of the Wulicang Second Community joint union, with a paid accident enrolment and a Jing
card, hurts his hand. Both claims open by themselves, each with its own checklist; the card claim
is documented, approved and paid. Then the Mother's Day parent-child activity (children 3 to 12):
it fills up, the families after that wait in line, a child of two is refused, a cancellation
promotes the first in line, and a family who missed out registers interest for next time. Then a
mediation case for unpaid wages climbs from the street station to the district and is agreed;
and the heart station: the same member books a free session with the partner provider's
counsellor, who completes it with notes that only she and the supervisor can read (every attempt
audited). Every run uses new members, so it can be repeated.
"""

from __future__ import annotations

import os
import random
import sys
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import httpx

# Run as a script (`make demo`): the repository root holds the shared identifier generators.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.identifiers import card_number, national_id

MEMBERSHIP = os.environ.get("DEMO_MEMBERSHIP_URL", "http://127.0.0.1:8001")
CLAIMS = os.environ.get("DEMO_CLAIMS_URL", "http://127.0.0.1:8002")
MEDIATION = os.environ.get("DEMO_MEDIATION_URL", "http://127.0.0.1:8005")
COUNSELING = os.environ.get("DEMO_COUNSELING_URL", "http://127.0.0.1:8004")
ACTIVITIES = os.environ.get("DEMO_ACTIVITIES_URL", "http://127.0.0.1:8003")
TOKEN = os.environ.get("DEMO_TOKEN", "local-staff-token")
COUNSELOR_TOKEN = os.environ.get("DEMO_COUNSELOR_TOKEN", "local-counselor-token")
SUPERVISOR_TOKEN = os.environ.get("DEMO_SUPERVISOR_TOKEN", "local-supervisor-token")
BEIJING = timezone(timedelta(hours=8))


def call(
    client: httpx.Client,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    expect: int = 200,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    r = client.request(method, path, json=body, headers=headers)
    if r.status_code != expect:
        sys.exit(f"{method} {path} answered {r.status_code}: {r.text}")
    answer: dict[str, Any] = r.json()
    return answer


def join(m: httpx.Client, union_id: str, full_name: str, gender: str, joined_on: date) -> str:
    birth = date(1980, 1, 1) + timedelta(days=random.randint(0, 12 * 365))
    body = {
        "union_id": union_id,
        "full_name": full_name,
        "gender": gender,
        "birth_date": birth.isoformat(),
        "national_id": national_id(birth, female=gender == "female"),
        "joined_on": joined_on.isoformat(),
    }
    member_id: str = call(m, "POST", "/v1/members", body, 201)["member_id"]
    return member_id


def register(a: httpx.Client, activity: str, body: dict[str, Any]) -> httpx.Response:
    """Register, retrying while the activities service has not heard of the member yet."""
    deadline = time.monotonic() + 30
    while True:
        r = a.post(f"/v1/activities/{activity}/registrations", json=body)
        if r.status_code != 409 or r.json().get("code") != "member_not_known" or time.monotonic() > deadline:
            return r
        time.sleep(0.3)


def mothers_day(m: httpx.Client, a: httpx.Client, union_id: str, today: date) -> None:
    """Seed story, section 3: the Mother's Day parent-child activity, with places for 3 families."""
    day = today + timedelta(days=14)
    activity = call(
        a,
        "POST",
        "/v1/activities",
        {
            "kind": "parent_child",
            "title": "母亲节亲子活动 Mother's Day: button paintings and potted plants",
            "starts_at": f"{day.isoformat()}T09:00:00+08:00",
            "ends_at": f"{day.isoformat()}T12:00:00+08:00",
            "venue": "顺义花卉中心 Shunyi flower centre",
            "capacity": 3,
            "audience": "member_families",
            "child_age_min": 3,
            "child_age_max": 12,
            "union_id": union_id,
            "partner": {
                "name": "首都职工志愿服务 Capital workers' volunteer service",
                "kind": "volunteer_team",
            },
        },
        201,
    )["activity_id"]
    print(f"\nactivity   {activity} Mother's Day on {day}, 3 places, children 3-12")
    mothers = ["李芳", "张敏", "刘静", "陈丽", "杨秀英", "赵娜"]
    members = [join(m, union_id, name, "female", today - timedelta(days=400)) for name in mothers]
    child = (day - timedelta(days=6 * 365)).isoformat()
    registrations: list[tuple[str, dict[str, Any]]] = []
    for name, member in zip(mothers[:5], members[:5], strict=True):
        r = register(a, activity, {"member_id": member, "children": [{"birth_date": child}]})
        if r.status_code != 201:
            sys.exit(f"registration answered {r.status_code}: {r.text}")
        answer = r.json()
        registrations.append((name, answer))
        where = f"waitlist #{answer['waitlist_position']}" if answer["waitlist_position"] else ""
        print(f"  {name:<4} {answer['status']:<10} {where}")
    too_young = (day - timedelta(days=2 * 365 + 30)).isoformat()
    r = register(a, activity, {"member_id": members[5], "children": [{"birth_date": too_young}]})
    print(f"  {mothers[5]:<4} refused    {r.status_code} {r.json().get('code')} (a child of two)")

    first_name, first = registrations[0]
    cancelled = call(a, "POST", f"/v1/activities/{activity}/registrations/{first['registration_id']}/cancel")
    promoted = next(
        n for n, ans in registrations if ans["registration_id"] == cancelled["promoted_registration_id"]
    )
    print(f"\n{first_name} cancels: the place goes to the first in line, {promoted}")
    state = call(a, "GET", f"/v1/activities/{activity}")
    capacity, confirmed, waiting = state["capacity"], state["confirmed_count"], state["waitlist_count"]
    print(f"  capacity {capacity}, confirmed {confirmed}, waiting {waiting}")
    for item in call(a, "GET", f"/v1/activities/{activity}/registrations")["items"]:
        name = next(n for n, ans in registrations if ans["registration_id"] == item["registration_id"])
        position = f"#{item['waitlist_position']}" if item["waitlist_position"] else ""
        print(f"  {name:<4} {item['status']:<10} {position}")
    interest = call(a, "POST", "/v1/interests", {"member_id": members[5], "kind": "parent_child"}, 201)
    print(f"\n{mothers[5]} missed out and asks to hear of the next one (interest {interest['interest_id']})")
    stats = call(a, "GET", "/v1/statistics/participation?by=activity")["items"]
    row = next(s for s in stats if s["key"] == activity)
    print(f"  demand so far: {row['registrations']} registrations, {row['waitlisted_now']} still waiting")


def main() -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    today = date.today()
    with (
        httpx.Client(base_url=MEMBERSHIP, headers=headers, timeout=10) as m,
        httpx.Client(base_url=CLAIMS, headers=headers, timeout=10) as c,
        httpx.Client(base_url=ACTIVITIES, headers=headers, timeout=10) as a,
    ):
        parent = None
        unions: dict[str, str] = {}
        for name, level in [
            ("北京市总工会 Beijing Federation of Trade Unions", "municipal"),
            ("顺义区总工会 Shunyi District Federation", "district"),
            ("石园街道总工会 Shiyuan Street Federation", "street"),
            ("五里仓第二社区联合工会 Wulicang Second Community Joint Union", "grassroots"),
        ]:
            parent = call(m, "POST", "/v1/unions", {"name": name, "level": level, "parent_id": parent}, 201)[
                "union_id"
            ]
            unions[level] = parent
            print(f"union      {level:<10} {name}")
        birth = date(1975, 1, 1) + timedelta(days=random.randint(0, 20 * 365))
        member = call(
            m,
            "POST",
            "/v1/members",
            {
                "union_id": parent,
                "full_name": "王师傅",
                "gender": "male",
                "birth_date": birth.isoformat(),
                "national_id": national_id(birth),
                "joined_on": (today - timedelta(days=3 * 365)).isoformat(),
            },
            201,
        )["member_id"]
        print(f"member     {member} joined the Wulicang Second Community joint union")
        card = call(
            m,
            "POST",
            f"/v1/members/{member}/card",
            {
                "card_number": card_number("62103000", 16),
                "issued_on": (today - timedelta(days=2 * 365)).isoformat(),
            },
            201,
        )
        print(f"Jing card  ****{card['card_last4']}")
        enrolment = call(
            m,
            "POST",
            f"/v1/members/{member}/enrollments",
            {
                "plan_code": "accident_injury",
                "shares": 1,
                "starts_on": (today - timedelta(days=90)).isoformat(),
                # Paid at the counter 90 days ago: cover from before today is a paper enrolment,
                # which only a supervisor records.
                "paper": {
                    "receipt_reference": f"DEMO-{uuid.uuid4().hex[:8]}",
                    "paid_on": (today - timedelta(days=90)).isoformat(),
                },
            },
            201,
            headers={"Authorization": f"Bearer {SUPERVISOR_TOKEN}"},
        )
        print(f"enrolment  accident_injury, 1 share, until {enrolment['ends_on']}")
        report = call(
            m,
            "POST",
            f"/v1/members/{member}/injury-reports",
            {
                "occurred_on": (today - timedelta(days=2)).isoformat(),
                "work_related": False,
                "description": "hurt his hand at home",
                "diagnosis": "contusion of the right hand",
                "hospital": "顺义区医院 Shunyi District Hospital",
            },
            202,
        )["report_id"]
        print(f"injury     report {report} (not work-related)")

        deadline = time.monotonic() + 30
        claims: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(claims) < 2:
            claims = call(c, "GET", f"/v1/claims?report_id={report}")["items"]
            time.sleep(0.3)
        if len(claims) < 2:
            sys.exit(f"expected two claims within 30 s, found {len(claims)}: is the claims service up?")
        print("\nThe claims service opened, without being asked:")
        for claim in claims:
            print(
                f"  {claim['plan_code']:<24} {claim['benefit']:<5} {claim['status']:<8} "
                f"checklist: {', '.join(claim['required_documents'])}"
            )

        card_claim = next(x for x in claims if x["benefit"] == "card")
        cid = card_claim["claim_id"]
        call(c, "POST", f"/v1/claims/{cid}/documents", {"documents": card_claim["required_documents"]})
        call(c, "POST", f"/v1/claims/{cid}/approve", {"amount": "2000.00"})
        paid = call(c, "POST", f"/v1/claims/{cid}/pay")
        print(f"\nCard claim documented, approved and paid: {paid['paid_amount']} CNY ({paid['status']})")
        history = call(c, "GET", f"/v1/claims/{cid}")["history"]
        print("  history: " + " -> ".join(h["event_type"] for h in history))

        time.sleep(1.0)
        timeline = m.get(f"/v1/members/{member}/timeline")
        if timeline.status_code == 200:
            print("\nMember timeline (membership):")
            for entry in timeline.json().get("items", []):
                print(f"  {entry['occurred_at'][:19]}  {entry['source']:<10} {entry['event_type']}")

        mothers_day(m, a, str(parent), today)
        mediation_story(headers, unions, member, today)
    heart_station(member)


def mediation_story(headers: dict[str, str], unions: dict[str, str], member: str, today: date) -> None:
    """Mediation: the member's unpaid wages, received at the Shiyuan station, a session in its
    mediation room, escalated to the district, agreed and paid; the street sees the outcome."""
    with httpx.Client(base_url=MEDIATION, headers=headers, timeout=10) as md:
        try:
            md.get("/healthz")
        except httpx.TransportError:
            print("\n(mediation service not running: skipping the mediation story)")
            return
        street, district = unions["street"], unions["district"]
        deadline = time.monotonic() + 30
        while md.get(f"/v1/stations/{street}").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.3)
        call(md, "PUT", f"/v1/stations/{street}", {"case_prefix": "SY"})
        body = {
            "union_id": street,
            "member_id": member,
            "employer": {"name": "顺义某物流有限公司 a Shunyi logistics company"},
            "category": "wages",
            "claim_text": "three months of wages unpaid",
            "amount": "8600.00",
            "learned_on": (today - timedelta(days=40)).isoformat(),
        }
        while True:  # the member's MemberJoined may still be on its way to mediation
            r = md.post("/v1/cases", json=body)
            if r.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        if r.status_code != 201:
            sys.exit(f"POST /v1/cases answered {r.status_code}: {r.text}")
        case = r.json()
        print(
            f"\nMediation case {case['case_number']} received at the Shiyuan station: mediation ends "
            f"{case['mediation_deadline']} (art. 14), arbitration limit {case['arbitration_limit']} (art. 27)"
        )
        cid = case["case_id"]
        start = (today + timedelta(days=2)).isoformat()
        call(
            md,
            "POST",
            f"/v1/cases/{cid}/sessions",
            {
                "starts_at": f"{start}T09:00:00+08:00",
                "ends_at": f"{start}T10:30:00+08:00",
                "mediator": "mediator-1",
            },
            201,
        )
        taken = md.post(
            f"/v1/cases/{cid}/sessions",
            json={
                "starts_at": f"{start}T10:00:00+08:00",
                "ends_at": f"{start}T11:00:00+08:00",
                "mediator": "x",
            },
        )
        print(
            f"  session booked in the mediation room; an overlapping one: "
            f"{taken.status_code} {taken.json()['code']}"
        )
        up = call(md, "POST", f"/v1/cases/{cid}/escalate", {"reason": "employer did not come"})
        print(f"  escalated to the {up['tier']} tier")
        queue = call(md, "GET", f"/v1/queues/{district}")["items"]
        print(f"  district queue: {[q['case_number'] for q in queue]}")
        due = (today + timedelta(days=30)).isoformat()
        call(
            md,
            "POST",
            f"/v1/cases/{cid}/agreement",
            {"terms": "paid in two parts", "amount": "7000.00", "due_on": due},
        )
        call(md, "POST", f"/v1/cases/{cid}/agreement/fulfilment", {"amount_paid": "7000.00"})
        seen = call(md, "GET", f"/v1/cases/{cid}")
        print(
            f"  the street sees: {seen['status']} at the {seen['outcome']['agreed_at_tier']} tier, "
            f"{seen['outcome']['amount_paid']} CNY recovered"
        )
        print("  history: " + " -> ".join(h["event_type"] for h in seen["history"]))


def heart_station(member: str) -> None:
    """A session booked by the member, completed with notes, read by who may; one refused read."""
    today = datetime.now(BEIJING).date()
    staff = {"Authorization": f"Bearer {TOKEN}"}
    counselor_auth = {"Authorization": f"Bearer {COUNSELOR_TOKEN}"}
    with httpx.Client(base_url=COUNSELING, headers=staff, timeout=10) as k:
        active = call(k, "GET", "/v1/counselors?active=true")["items"]
        mine = next((x for x in active if x["subject"] == "counselor-1"), None)
        counselor = (
            mine["counselor_id"]
            if mine
            else call(
                k,
                "POST",
                "/v1/counselors",
                {
                    "display_name": "和谐心理 王老师 (partner)",
                    "provider": "partner",
                    "subject": "counselor-1",
                },
                201,
            )["counselor_id"]
        )
        # A 40-minute slot earlier today, so the session can be completed now; one not yet taken.
        slot = None
        for minutes in random.sample(range(0, 23 * 60, 40), k=30):
            start = datetime.combine(today, clock_time(0), BEIJING) + timedelta(minutes=minutes)
            body = {"starts_at": start.isoformat(), "ends_at": (start + timedelta(minutes=40)).isoformat()}
            r = k.post(f"/v1/counselors/{counselor}/slots", json=body, headers=counselor_auth)
            if r.status_code == 201:
                slot = r.json()
                break
        if slot is None:
            sys.exit("no free slot left today for counselor-1: run the demo again tomorrow")
        print(f"\nHeart station: slot {slot['starts_at']} with counsellor {counselor}")

        deadline = time.monotonic() + 30
        while True:  # counseling learns of the member from membership.events
            r = k.post("/v1/appointments", json={"slot_id": slot["slot_id"], "member_id": member})
            if r.status_code == 201 or time.monotonic() > deadline:
                break
            if r.json().get("code") != "member_not_known":
                break
            time.sleep(0.3)
        if r.status_code != 201:
            sys.exit(f"booking answered {r.status_code}: {r.text}")
        booked = r.json()
        appointment = booked["appointment_id"]
        print(
            f"booked     appointment {appointment}; on Kafka the client is only {booked['client_ref'][:16]}…"
        )
        taken = k.post("/v1/appointments", json={"slot_id": slot["slot_id"], "member_id": member})
        print(f"again      same slot -> {taken.status_code} {taken.json().get('code')}")
        notes = "Stress after the injury; worried about the claim. Agreed: breathing exercise, follow-up."
        done = k.post(
            f"/v1/appointments/{appointment}/complete", json={"notes": notes}, headers=counselor_auth
        )
        if done.status_code != 200:
            sys.exit(f"completing answered {done.status_code}: {done.text}")
        print(f"completed  by counselor-1 with notes (encrypted, never on Kafka): {done.json()['status']}")
        for who, token in (
            ("staff", TOKEN),
            ("counsellor", COUNSELOR_TOKEN),
            ("supervisor", SUPERVISOR_TOKEN),
        ):
            r = k.get(f"/v1/appointments/{appointment}/notes", headers={"Authorization": f"Bearer {token}"})
            print(f"notes      read by {who:<10} -> {r.status_code}")
        trail = k.get(
            f"/v1/audit?appointment_id={appointment}", headers={"Authorization": f"Bearer {SUPERVISOR_TOKEN}"}
        ).json()["items"]
        print(
            "audit      "
            + "; ".join(f"{e['subject']} {'read' if e['allowed'] else 'refused'}" for e in trail)
        )
        stats = call(k, "GET", "/v1/statistics")
        print(
            f"statistics {stats['sessions']} session(s), no-show rate {stats['no_show_rate']}, "
            f"clients {stats['clients']}"
        )


if __name__ == "__main__":
    main()
