"""The alert rules and the dashboard in deploy/ name metrics that exist, and routes are templates."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import shared.inbox
import shared.kafka
import shared.metrics
import shared.relay
from shared.metrics import route_template

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
OURS = re.compile(r"\b((?:http_request|consumer|outbox|dlq|relay|kafka_topics|ops_metrics)_[a-z_]*)")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def _known() -> set[str]:
    assert shared.inbox and shared.kafka and shared.relay and shared.metrics  # registers them all
    names = set()
    for collector in REGISTRY.collect():
        names.add(collector.name)
        names.update(sample.name for sample in collector.samples)
    return names


def _base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _used(text: str) -> set[str]:
    return {m for m in OURS.findall(text)}


def test_alert_rules_use_only_exported_metrics() -> None:
    text = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    used = _used(
        "\n".join(line for line in text.splitlines() if "expr:" in line or line.startswith("          "))
    )
    assert {"consumer_lag", "outbox_oldest_event_age_seconds", "dlq_messages"} <= used
    known = _known()
    assert {u for u in used if u not in known and _base(u) not in known} == set()


def test_dashboard_uses_only_exported_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "union-services.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = _used("\n".join(exprs))
    assert {"consumer_lag", "outbox_depth", "dlq_messages", "http_request_duration_seconds_bucket"} <= used
    known = _known()
    assert {u for u in used if u not in known and _base(u) not in known} == set()


def test_route_template_without_fastapi_context() -> None:
    scope = {"route": object(), "path": "/v1/members/abc/card", "path_params": {"member_id": "abc"}}
    assert route_template(scope) == "/v1/members/{member_id}/card"
    assert route_template({"path": "/nope"}) == "unmatched"
