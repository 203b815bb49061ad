"""/metrics of the running membership app: HTTP latency by route template, and the ops figures."""

from __future__ import annotations

import uuid

import pytest

from shared.kafka import missing_topics
from tests.integration.membership.conftest import Service
from tests.integration.membership.support import STAFF
from tests.kafka_support import eventually

METRICS = {"Authorization": "Bearer local-metrics-token"}  # the development fallback
pytestmark = pytest.mark.integration


async def test_latency_is_labelled_by_route_template_and_status(service: Service) -> None:
    member = str(uuid.uuid4())
    for _ in range(3):
        assert (await service.client.get(f"/v1/members/{member}", headers=STAFF)).status_code == 404
    assert (await service.client.get("/v1/no-such-route", headers=STAFF)).status_code == 404
    text = (await service.client.get("/metrics", headers=METRICS)).text
    assert 'route="/v1/members/{member_id}",status="404"' in text
    count = next(
        line
        for line in text.splitlines()
        if line.startswith("http_request_duration_seconds_count")
        and 'route="/v1/members/{member_id}"' in line
        and 'status="404"' in line
    )
    assert float(count.rsplit(" ", 1)[1]) >= 3
    assert 'route="unmatched"' in text
    assert member not in text  # raw paths never become labels


async def test_metrics_carry_outbox_lag_and_dead_letters(service: Service) -> None:
    # The consumer creates its topic as it starts, in the background, and the Kafka figures are
    # cached for 15 s: a scrape before the topic existed (this module's other test may make one)
    # reports no lag until the cache expires. So the lag line must appear within one interval.
    await eventually(lambda: _topic_exists(service.kafka, service.claims_topic), timeout=30)
    group = f"{service.settings.consumer_group_prefix}membership.claims"
    lag = f'consumer_lag{{group="{group}",partition="0",topic="{service.claims_topic}"}}'

    async def scrape_with_lag() -> str | None:
        text = (await service.client.get("/metrics", headers=METRICS)).text
        return text if lag in text else None

    text = await eventually(scrape_with_lag, timeout=15 + 10, interval=1.0)
    assert "outbox_depth " in text and "outbox_oldest_event_age_seconds " in text
    assert f'dlq_messages{{topic="{service.claims_topic}.dlq"}} 0.0' in text


async def _topic_exists(bootstrap: str, topic: str) -> bool:
    return not await missing_topics(bootstrap, [topic])
