"""Where the tests find PostgreSQL and Kafka, in the order the README promises:

1. ``DATABASE_URL`` (an admin URL that may CREATE DATABASE) and ``KAFKA_BOOTSTRAP_SERVERS``;
2. else testcontainers, when a Docker engine answers;
3. else the local services ``deploy/local/infra.sh up`` started (127.0.0.1:5432 and :9092).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

LOCAL_ADMIN_URL = "postgresql://union_admin:union-admin-local@127.0.0.1:5432/postgres"
LOCAL_KAFKA = "127.0.0.1:9092"


@dataclass(frozen=True)
class Infra:
    admin_url: str  # plain postgresql:// URL with CREATEDB rights
    kafka: str
    source: str


def _plain(url: str) -> str:
    """Drop a SQLAlchemy driver suffix: postgresql+psycopg2:// -> postgresql://."""
    scheme, rest = url.split("://", 1)
    return f"{scheme.split('+')[0]}://{rest}"


@contextlib.contextmanager
def discover() -> Iterator[Infra]:
    db_env, kafka_env = os.environ.get("DATABASE_URL"), os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    with contextlib.ExitStack() as stack:
        db = _plain(db_env) if db_env else None
        kafka = kafka_env
        source = "environment"
        if db is None or kafka is None:
            containers = _try_containers(stack, need_db=db is None, need_kafka=kafka is None)
            if containers is not None:
                db = db or containers[0]
                kafka = kafka or containers[1]
                source = "testcontainers"
        if db is None or kafka is None:
            db, kafka, source = db or LOCAL_ADMIN_URL, kafka or LOCAL_KAFKA, "local"
        yield Infra(db, kafka, source)


def _try_containers(
    stack: contextlib.ExitStack, *, need_db: bool, need_kafka: bool
) -> tuple[str | None, str | None] | None:
    """None when there is no Docker engine: the constructors themselves raise without one."""
    try:
        from testcontainers.community.kafka import KafkaContainer
        from testcontainers.community.postgres import PostgresContainer

        pg = PostgresContainer("postgres:15.18-bookworm") if need_db else None
        kafka = KafkaContainer("apache/kafka:4.1.2").with_kraft() if need_kafka else None
    except Exception:
        return None
    db_url = _plain(stack.enter_context(pg).get_connection_url()) if pg else None
    kafka_url = stack.enter_context(kafka).get_bootstrap_server() if kafka else None
    return db_url, kafka_url
