"""A short synchronous run of `make failover-demo`: a primary and a streaming standby, the
walsender frozen, the primary SIGKILLed under load, the standby promoted, the services (never
restarted) writing to it through their multi-host URL. With synchronous replication nothing
Kafka has may be missing from the promoted store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.kafka_broker import REPO


def test_a_synchronous_failover_loses_nothing_and_the_services_reconnect(tmp_path: Path) -> None:
    out = tmp_path / "failover.json"
    args = ["--modes", "sync", "--rate", "10", "--members", "12", "--before", "4", "--after", "5"]
    run = subprocess.run(
        [sys.executable, "-m", "bench.failover", *args, "--commits", "50", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    result = json.loads(out.read_text())["runs"]["sync"]
    assert result["synchronous_standby_names"] == "ANY 1 (standby)"
    assert result["replication"] == "streaming/quorum"
    # The crash really happened under load, and writes went on afterwards, on the promoted standby.
    assert any("SIGKILLed" in note for note in result["notes"])
    assert result["accepted_after_promotion"] > 0
    assert result["reports_accepted"] == result["reports_sent"] > 0
    assert result["lost"] == result["versions_reused"] == result["accepted_not_on_kafka"] == 0
    assert result["reports_undecided"] == 0 and result["claims_missing"] == 0
    assert result["topics"]["membership.events"]["on_kafka"] > 0
    assert not result["unexpected_exits"]
