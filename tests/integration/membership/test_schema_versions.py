"""UnionRegistered v1 events written before v2 existed keep working, on the real database and
broker: the store upcasts them on read (aggregates, rebuilds), the relay publishes them as stored
(v1 on the wire, valid against the still-published v1 schema)."""

from __future__ import annotations

import json
import uuid

import jsonschema
import pytest

from services.membership.projections import rebuild_read_models
from shared.contracts import docs
from shared.contracts import membership as m
from tests.integration.membership.conftest import Service
from tests.integration.membership.support import STAFF, create, published

pytestmark = pytest.mark.integration


async def test_a_stored_v1_union_is_read_as_v2_and_published_as_v1(service: Service) -> None:
    municipal = (await create(service, "/v1/unions", {"name": "北京市总工会·v1", "level": "municipal"}))[
        "union_id"
    ]
    district = (
        await create(
            service, "/v1/unions", {"name": "顺义区总工会·v1", "level": "district", "parent_id": municipal}
        )
    )["union_id"]
    street = uuid.uuid4()
    old = m.UnionRegisteredV1(
        union_id=street, name="石园街道总工会·v1", level="street", parent_id=uuid.UUID(district)
    )
    batch = service.runtime.store.envelopes("Union", str(street), 0, [old], correlation_id=uuid.uuid4())
    assert batch[0].schema_version == 1
    async with service.runtime.engine.begin() as conn:  # as written by the release before v2
        await service.runtime.store.append(conn, batch)
        [loaded] = await service.runtime.store.read_stream(conn, str(street))
    assert loaded.schema_version == 2 and loaded.data["parent_union_id"] == district

    await rebuild_read_models(service.runtime.engine, service.runtime.store)
    union = (await service.client.get(f"/v1/unions/{street}", headers=STAFF)).json()
    assert union["parent_id"] == district and union["level"] == "street"
    # The aggregate folds the upcast event: a grassroots union can be registered under it.
    await create(
        service,
        "/v1/unions",
        {"name": "五里仓社区联合工会·v1", "level": "grassroots", "parent_id": str(street)},
    )

    [wire] = [json.loads(r.value) for r in await published(service) if r.key == str(street).encode()]
    assert wire["schema_version"] == 1 and wire["data"]["parent_id"] == district
    schema = json.loads(docs.schema_path("UnionRegistered", 1).read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(wire)
