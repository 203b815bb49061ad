"""A short run of the fault campaign (`make faults`): the script itself must keep working and
its verdict must be PASS — a small version of the 10,000-report run the README reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.kafka_broker import REPO


def test_a_short_fault_campaign_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    out = tmp_path / "faults.json"
    faults = "kill_claims,kill_membership,kill_mediation,kafka_sigkill,postgres_immediate,inject_malformed"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.faults",
            "--reports",
            "240",
            "--rate",
            "12",
            "--members",
            "30",
            "--gap",
            "2",
            "3",
            "--seed",
            "11",
            "--faults",
            faults,
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["problems"] == []
    # At least the 240 asked for (more while a fault kind is still to come), all accepted, all decided.
    assert result["reports_sent"] >= 240
    assert result["reports_accepted"] == result["reports_sent"] and result["reports_undecided"] == 0
    assert result["claims_found"] == result["claims_expected"] > 0
    # The faults really happened: each of the six kinds at least once.
    assert {f["kind"] for f in result["faults"]} == set(faults.split(","))
    # Every malformed probe reached a dead-letter topic; nothing real did.
    assert result["probes_in_dlq"] == result["probes_expected_in_dlq"] > 0
    assert not result["dead_letters_unexpected"]
