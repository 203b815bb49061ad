"""Schema evolution: the published schemas are a record that the models may only extend.

``docs/contracts/schemas/<Type>.v<N>.json`` is what integrators were given. Each model's schema is
compared with it; a breaking change fails here (and ``make contracts`` refuses to write it) until
it becomes schema_version N+1 with an upcaster.
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest

from shared.contracts import compat, docs, membership


def test_no_current_schema_breaks_its_published_version() -> None:
    broken = docs.refused(docs.documents())
    assert broken == {}, "\n".join(f"{p.name}: {problems}" for p, problems in broken.items())


def test_every_version_of_every_event_stays_published() -> None:
    for service in docs.SERVICES:
        for event_type, version, _ in docs.versions(service.registry):
            assert docs.schema_path(event_type, version).exists(), f"{event_type} v{version} not published"


def published(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((docs.OUT / "schemas" / name).read_text())
    return schema


def data_of(schema: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = schema["properties"]["data"]
    return data


def changed(name: str, edit: Any) -> list[str]:
    old = published(name)
    new = copy.deepcopy(old)
    edit(new)
    return compat.breaking_changes(old, new)


def test_unchanged_and_purely_additive_changes_are_compatible() -> None:
    assert changed("ClaimFiled.v1.json", lambda s: None) == []

    def add_optional_field_and_enum_value(s: dict[str, Any]) -> None:
        data_of(s)["properties"]["channel"] = {"type": "string", "default": "counter"}
        s["$defs"]["Benefit"]["enum"].append("voucher")
        data_of(s)["properties"]["plan_code"]["description"] = "the catalogue code"

    assert changed("ClaimFiled.v1.json", add_optional_field_and_enum_value) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda s: data_of(s)["properties"].pop("plan_code"), "plan_code: field removed"),
        (lambda s: data_of(s)["required"].remove("plan_code"), "plan_code: no longer required"),
        (
            lambda s: (
                data_of(s)["properties"].__setitem__("channel", {"type": "string"}),
                data_of(s)["required"].append("channel"),
            ),
            "channel: new field is required",
        ),
        (lambda s: s["$defs"]["Benefit"]["enum"].remove("card"), "enum value(s) removed: card"),
        (
            lambda s: data_of(s)["properties"].__setitem__("report_id", {"type": "string", "format": "uuid"}),
            "report_id: type narrowed, null no longer accepted",
        ),
        (
            lambda s: data_of(s)["properties"].__setitem__("plan_code", {"type": "integer"}),
            "plan_code: type changed",
        ),
        (
            lambda s: data_of(s)["properties"]["claim_id"].__setitem__("format", "uri"),
            "claim_id: format changed",
        ),
    ],
    ids=[
        "field-removed",
        "required-dropped",
        "required-added",
        "enum-removed",
        "narrowed",
        "retyped",
        "format",
    ],
)
def test_breaking_changes_are_caught(edit: Any, expected: str) -> None:
    problems = changed("ClaimFiled.v1.json", edit)
    assert any(expected in p for p in problems), problems


def test_the_generator_refuses_to_overwrite_a_published_schema_incompatibly(tmp_path: Any) -> None:
    path = tmp_path / "schemas" / "ClaimFiled.v1.json"
    path.parent.mkdir()
    old = published("ClaimFiled.v1.json")
    path.write_text(json.dumps(old))
    new = copy.deepcopy(old)
    data_of(new)["properties"].pop("benefit")
    assert list(docs.refused({path: json.dumps(new)})) == [path]


def test_union_registered_v2_renames_parent_id_and_v1_is_still_read() -> None:
    union_id, parent = uuid.uuid4(), uuid.uuid4()
    v1 = membership.UnionRegisteredV1(
        union_id=union_id, name="石园街道总工会", level="street", parent_id=parent
    )
    decoded = membership.registry.decode("UnionRegistered", 1, v1.model_dump(mode="json"))
    assert decoded == membership.UnionRegistered(
        union_id=union_id, name="石园街道总工会", level="street", parent_union_id=parent
    )
    assert membership.registry.decode("UnionRegistered", 1, {**v1.model_dump(mode="json"), "parent_id": None})
    assert membership.registry.current_version("UnionRegistered") == 2
    # The rename is breaking, which is why it is a new version and not an edit of v1.
    assert compat.breaking_changes(published("UnionRegistered.v1.json"), published("UnionRegistered.v2.json"))
