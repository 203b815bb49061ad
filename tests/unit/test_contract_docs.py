"""The published JSON Schemas and AsyncAPI documents match the models the code uses."""

from __future__ import annotations

from shared.contracts import docs


def test_checked_in_contract_documents_are_up_to_date() -> None:
    stale = [p.name for p, text in docs.documents().items() if not p.exists() or p.read_text() != text]
    assert stale == [], "run `python -m shared.contracts.docs` and commit docs/contracts/"


def test_asyncapi_lists_every_event_of_the_contract_on_its_topic() -> None:
    doc = docs.asyncapi("membership")
    published = set(doc["channels"]["membership.events"]["messages"])
    assert {
        "UnionRegistered",
        "MemberJoined",
        "MemberTransferred",
        "MemberLeft",
        "CardIssued",
        "CardCancelled",
        "PlanEnrolled",
        "EnrollmentCancelled",
        "InjuryReported",
    } <= published
    consumed = set(doc["channels"]["claims.events"]["messages"])
    assert {
        "ClaimFiled",
        "NoCoverageFound",
        "ClaimDocumentsReceived",
        "ClaimApproved",
        "ClaimRejected",
        "ClaimPaid",
    } <= consumed


def property_names(schema: object) -> set[str]:
    if isinstance(schema, dict):
        own = set(schema.get("properties", {})) if isinstance(schema.get("properties"), dict) else set()
        return own.union(*(property_names(v) for v in schema.values()))
    if isinstance(schema, list):
        return set().union(*(property_names(v) for v in schema))
    return set()


def test_no_event_schema_has_a_field_for_personal_identifiers_or_health_details() -> None:
    names = property_names(
        [docs.event_schema(r, t.event_type) for _, r, _ in docs.SERVICES.values() for t in r.types()]
    )
    assert "member_id" in names  # the walk does find payload fields
    assert not names & {"national_id", "phone", "card_number", "diagnosis", "description", "hospital"}
