"""`make demo`: the seed story, walked through the public HTTP APIs of membership, claims and activities.

A member of the Wulicang Second Community joint union, with a paid accident enrolment and a Jing
card, hurts his hand. Both claims open by themselves, each with its own checklist; the card claim
is documented, approved and paid. Then the Mother's Day parent-child activity (children 3 to 12):
it fills up, the families after that wait in line, a child of two is refused, a cancellation
promotes the first in line, and a family who missed out registers interest for next time. Every
run uses new members, so it can be repeated.
"""

from __future__ import annotations

import os
import random
import sys
import time
from datetime import date, timedelta
from typing import Any

import httpx

MEMBERSHIP = os.environ.get("DEMO_MEMBERSHIP_URL", "http://127.0.0.1:8001")
CLAIMS = os.environ.get("DEMO_CLAIMS_URL", "http://127.0.0.1:8002")
ACTIVITIES = os.environ.get("DEMO_ACTIVITIES_URL", "http://127.0.0.1:8003")
TOKEN = os.environ.get("DEMO_TOKEN", "local-staff-token")


def national_id(birth: date) -> str:
    """A random, well-formed (GB 11643 check digit) ID from the Shunyi district code."""
    body = f"110113{birth:%Y%m%d}{random.randint(100, 999)}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]


def call(
    client: httpx.Client, method: str, path: str, body: dict[str, Any] | None = None, expect: int = 200
) -> dict[str, Any]:
    r = client.request(method, path, json=body)
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
        "national_id": national_id(birth),
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
        for name, level in [
            ("北京市总工会 Beijing Federation of Trade Unions", "municipal"),
            ("顺义区总工会 Shunyi District Federation", "district"),
            ("石园街道总工会 Shiyuan Street Federation", "street"),
            ("五里仓第二社区联合工会 Wulicang Second Community Joint Union", "grassroots"),
        ]:
            parent = call(m, "POST", "/v1/unions", {"name": name, "level": level, "parent_id": parent}, 201)[
                "union_id"
            ]
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
                "card_number": f"62103000{random.randint(10**7, 10**8 - 1)}",
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
            },
            201,
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


if __name__ == "__main__":
    main()
