"""The skeleton's first proof: a row in the real database and a message through the real broker."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.kafka_support import read_topic

pytestmark = pytest.mark.integration


async def test_row_and_message_round_trip(core_engine: AsyncEngine, kafka: str, topic: str) -> None:
    marker = uuid.uuid4()
    async with core_engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE probe (id uuid PRIMARY KEY, note text)"))
        await conn.execute(sa.text("INSERT INTO probe VALUES (:id, 'hello')"), {"id": marker})

    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=str(marker).encode(), key=b"probe")
    finally:
        await producer.stop()

    received = await read_topic(kafka, topic, expect=1)
    assert [r.value for r in received] == [str(marker).encode()]
    assert received[0].key == b"probe"

    async with core_engine.connect() as conn:
        note = await conn.scalar(sa.text("SELECT note FROM probe WHERE id = :id"), {"id": marker})
    assert note == "hello"
