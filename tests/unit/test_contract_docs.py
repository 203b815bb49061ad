"""The published JSON Schemas and AsyncAPI documents match the models and are valid documents.

Validity is checked by the official AsyncAPI parser (Node, installed by `make test` from
tools/asyncapi/package-lock.json) and every JSON Schema against its metaschema: comparing files
alone let both documents ship with dangling ``#/$defs`` references.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from shared.contracts import docs

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / "tools" / "asyncapi" / "validate.mjs"


def test_checked_in_contract_documents_are_up_to_date() -> None:
    stale = [p.name for p, text in docs.documents().items() if not p.exists() or p.read_text() != text]
    assert stale == [], "run `python -m shared.contracts.docs` and commit docs/contracts/"


def test_no_published_document_is_orphaned() -> None:
    """A published schema is a promise: dropping its model (or an old version's) must be seen."""
    generated = set(docs.documents())
    on_disk = set((docs.OUT / "schemas").glob("*.json")) | set(docs.OUT.glob("*.asyncapi.json"))
    assert sorted(p.name for p in on_disk - generated) == []


def _parse_with_official_parser(paths: list[Path]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (Node.js 20+) is not on PATH: it runs the official AsyncAPI parser")
    if not (VALIDATOR.parent / "node_modules" / "@asyncapi" / "parser").is_dir():
        pytest.fail("the AsyncAPI parser is not installed: run `make test` (or `make node-tools`)")
    result = subprocess.run(
        [node, str(VALIDATOR), *map(str, paths)], capture_output=True, text=True, timeout=120, check=False
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(paths), f"validator output unreadable: {result.stdout}\n{result.stderr}"
    return lines


def test_every_asyncapi_document_passes_the_official_parser(tmp_path: Path) -> None:
    paths = []
    for path, text in docs.documents().items():
        if path.name.endswith(".asyncapi.json"):
            paths.append(tmp_path / path.name)
            paths[-1].write_text(text)
    assert {p.name for p in paths} == {f"{s.name}.asyncapi.json" for s in docs.SERVICES}
    for report in _parse_with_official_parser(paths):
        # "info" and "hint" (e.g. a newer AsyncAPI minor exists) are advice; errors and warnings fail.
        serious = [d for d in report["diagnostics"] if d["severity"] in {"error", "warning"}]
        assert report["valid"] and serious == [], f"{Path(report['file']).name}: {serious}"


def test_the_parser_check_can_fail(tmp_path: Path) -> None:
    """The same dangling reference the documents once had is reported (so the check is real)."""
    doc = docs.asyncapi("claims")
    message = doc["components"]["messages"]["ClaimFiled.v1"]
    message["payload"]["schema"]["properties"]["data"]["properties"]["benefit"] = {"$ref": "#/$defs/Benefit"}
    path = tmp_path / "broken.asyncapi.json"
    path.write_text(json.dumps(doc))
    [report] = _parse_with_official_parser([path])
    assert not report["valid"]
    assert any(d["code"] == "invalid-ref" for d in report["diagnostics"])


def test_every_json_schema_is_valid_against_its_metaschema() -> None:
    schemas = [json.loads(t) for p, t in docs.documents().items() if p.parent.name == "schemas"]
    assert schemas
    for schema in schemas:
        assert schema["$schema"] == docs.JSON_SCHEMA_DIALECT
        jsonschema.Draft202012Validator.check_schema(schema)
        # The AsyncAPI documents declare the same schemas draft-07: they must be that too.
        jsonschema.Draft7Validator.check_schema({**schema, "$schema": docs.DRAFT_07})


def test_asyncapi_lists_every_event_of_the_contract_on_its_topic() -> None:
    doc = docs.asyncapi("membership")
    published = {m["name"] for m in _messages(doc, "membership.events")}
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
    consumed = {m["name"] for m in _messages(doc, "claims.events")}
    assert {
        "ClaimFiled",
        "NoCoverageFound",
        "ClaimDocumentsReceived",
        "ClaimApproved",
        "ClaimRejected",
        "ClaimPaid",
    } <= consumed


def _messages(doc: dict[str, Any], channel: str) -> list[dict[str, Any]]:
    refs = doc["channels"][channel]["messages"].values()
    return [doc["components"]["messages"][r["$ref"].rsplit("/", 1)[1]] for r in refs]


def test_asyncapi_says_what_a_subscriber_needs() -> None:
    for service in docs.SERVICES:
        doc = docs.asyncapi(service.name)
        assert {"local", "kubernetes"} <= set(doc["servers"])
        for sub in service.consumes:
            dlq = doc["channels"][f"{sub.topic}.dlq"]
            [dead] = _messages(doc, f"{sub.topic}.dlq")
            assert set(dead["headers"]["required"]) == {
                "dlq_error",
                "dlq_attempts",
                "dlq_consumer",
                "dlq_original_topic",
                "dlq_original_partition",
                "dlq_original_offset",
            }
            assert dlq["address"] == f"{sub.topic}.dlq"
            groups = [
                op["bindings"]["kafka"]["groupId"]["enum"]
                for op in doc["operations"].values()
                if op["action"] == "receive" and op["channel"]["$ref"] == f"#/channels/{sub.topic}"
            ]
            assert groups == [[f"{service.name}.{sub.consumer}"]]
        for message in _messages(doc, service.topic):
            assert message["bindings"]["kafka"]["key"]["type"] == "string"
            assert message["payload"]["schema"]["$schema"] == docs.DRAFT_07
            assert "$defs" not in json.dumps(message)


def test_documented_consumer_groups_are_the_ones_the_services_run() -> None:
    from services.activities.app import build_runtime as activities_runtime
    from services.claims.app import build_runtime as claims_runtime
    from services.counseling.app import build_runtime as counseling_runtime
    from services.mediation.app import build_runtime as mediation_runtime
    from services.mediation.settings import MediationSettings
    from services.membership.app import build_runtime as membership_runtime
    from services.membership.settings import MembershipSettings

    running = {
        (runtime.name, sub.topic, sub.group_id)
        for runtime in (
            claims_runtime(),
            membership_runtime(MembershipSettings()),
            mediation_runtime(MediationSettings()),
            counseling_runtime(),
            activities_runtime(),
        )
        for sub in runtime.subscriptions
    }
    documented = {(s.name, sub.topic, s.group_id(sub)) for s in docs.SERVICES for sub in s.consumes}
    assert running == documented


def property_names(schema: object) -> set[str]:
    if isinstance(schema, dict):
        own = set(schema.get("properties", {})) if isinstance(schema.get("properties"), dict) else set()
        return own.union(*(property_names(v) for v in schema.values()))
    if isinstance(schema, list):
        return set().union(*(property_names(v) for v in schema))
    return set()


def test_no_event_schema_has_a_field_for_personal_identifiers_or_health_details() -> None:
    names = property_names(
        [
            docs.event_schema(s.registry, event_type, version)
            for s in docs.SERVICES
            for event_type, version, _ in docs.versions(s.registry)
        ]
    )
    assert "member_id" in names  # the walk does find payload fields
    assert not names & {"national_id", "phone", "card_number", "diagnosis", "description", "hospital"}


def test_every_event_version_has_an_example_that_validates_against_its_published_schema() -> None:
    from shared.contracts.examples import examples

    samples = examples()
    known = {(t, v) for s in docs.SERVICES for t, v, _ in docs.versions(s.registry)}
    assert set(samples) == known
    for (event_type, version), sample in samples.items():
        schema = json.loads(docs.schema_path(event_type, version).read_text())
        validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
        errors = [e.message for e in validator.iter_errors(sample)]
        assert errors == [], f"{event_type} v{version}: {errors}"


def test_older_examples_upcast_to_valid_current_events() -> None:
    from shared.contracts.examples import examples

    for service in docs.SERVICES:
        for event_type, version, _ in docs.versions(service.registry):
            current = service.registry.current_version(event_type)
            sample = examples()[(event_type, version)]
            lifted = service.registry.upcast(event_type, version, sample["data"])
            schema = json.loads(docs.schema_path(event_type, current).read_text())
            envelope = {**sample, "schema_version": current, "data": lifted}
            jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(
                envelope
            )
            service.registry.decode(event_type, version, sample["data"])


def test_the_guide_shows_every_example_and_is_generated() -> None:
    generated = docs.documents()
    assert docs.GUIDE in generated
    text = generated[docs.GUIDE]
    for service in docs.SERVICES:
        for event_type, version, _ in docs.versions(service.registry):
            assert f"#### {event_type} v{version}" in text


def test_hoisting_keeps_two_different_definitions_of_one_name_apart() -> None:
    components: dict[str, Any] = {}
    first = {
        "properties": {"g": {"$ref": "#/$defs/Gender"}},
        "$defs": {"Gender": {"enum": ["female", "male"]}},
    }
    other = {"properties": {"g": {"$ref": "#/$defs/Gender"}}, "$defs": {"Gender": {"enum": ["f", "m", "x"]}}}
    assert docs._hoist(first, "A.v1", components)["properties"]["g"] == {
        "$ref": "#/components/schemas/Gender"
    }
    assert docs._hoist(first, "B.v1", components)["properties"]["g"] == {
        "$ref": "#/components/schemas/Gender"
    }
    assert docs._hoist(other, "C.v1", components)["properties"]["g"] == {
        "$ref": "#/components/schemas/C.v1.Gender"
    }
    assert components == {"Gender": {"enum": ["female", "male"]}, "C.v1.Gender": {"enum": ["f", "m", "x"]}}


def test_only_read_models_wait_longer_to_fill_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Claims' reaction to a report is on a path someone waits for (prompt fetch wait); every
    other subscription keeps a read model or timeline (background wait). The settings reach the
    Kafka consumer loop."""
    monkeypatch.setenv("UNION_CONSUMER_FETCH_WAIT_MS", "7")
    monkeypatch.setenv("UNION_CONSUMER_BACKGROUND_FETCH_WAIT_MS", "333")
    monkeypatch.setenv("UNION_CONSUMER_FETCH_MIN_BYTES", "4096")
    from services.activities.app import build_runtime as activities_runtime
    from services.claims.app import build_runtime as claims_runtime
    from services.counseling.app import build_runtime as counseling_runtime
    from services.mediation.app import build_runtime as mediation_runtime
    from services.mediation.settings import MediationSettings
    from services.membership.app import build_runtime as membership_runtime
    from services.membership.settings import MembershipSettings

    waits = {
        sub.group_id: (sub.loop.fetch_wait_ms, sub.loop.fetch_min_bytes)
        for runtime in (
            claims_runtime(),
            membership_runtime(MembershipSettings()),
            mediation_runtime(MediationSettings()),
            counseling_runtime(),
            activities_runtime(),
        )
        for sub in runtime.subscriptions
    }
    assert waits.pop("claims.coverage") == (7, 4096)
    assert waits and set(waits.values()) == {(333, 4096)}
