"""The Kubernetes topics declare the same retention the services create topics with locally."""

from __future__ import annotations

from pathlib import Path

import yaml

from shared.kafka import topic_retention_ms

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base" / "kafka-topics.yaml"


def test_every_declared_topic_has_the_retention_the_code_gives_it() -> None:
    topics = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc and doc["kind"] == "KafkaTopic"]

    assert len(topics) >= 10  # five event topics and their dead letters
    for doc in topics:
        name = doc["spec"]["topicName"]
        assert int(doc["spec"]["config"]["retention.ms"]) == topic_retention_ms(name), name
    assert {topic_retention_ms(d["spec"]["topicName"]) for d in topics} == {-1, 30 * 24 * 3600 * 1000}
