"""Where the CPU goes: per-process CPU time on this machine, grouped by part of the system.

On a machine where every service, PostgreSQL, Kafka and the load generator share two cores, the
end-to-end rate is bounded by the sum of everyone's CPU per report; a latency figure alone does not
say whose. ``bench/e2e.py`` takes a snapshot before and after each phase and prints CPU
milliseconds per report for each part (read from ``/proc``; Linux only, local processes only).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

_SERVICE = re.compile(r"services[./](\w+)")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _part(cmdline: str, comm: str) -> str:
    if comm.startswith("postgres") or "/postgres" in cmdline.split(" ", 1)[0]:
        return "postgres"
    if "java" in cmdline and "kafka" in cmdline:
        return "kafka"
    if (match := _SERVICE.search(cmdline)) and "python" in cmdline:
        return match.group(1)
    return ""


def snapshot() -> Counter[str]:
    """CPU seconds (user + system, own and of ended children) used so far by each part's
    processes; this process is "client"."""
    used: Counter[str] = Counter()
    proc = Path("/proc")
    if not proc.is_dir():
        return used
    me = os.getpid()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # ended while we looked
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        # utime + stime, and cutime + cstime: what its ended children used (PostgreSQL's
        # backends end when a pool recycles a connection; their time moves to the postmaster).
        seconds = sum(int(f) for f in fields[11:15]) / _TICKS
        part = "client" if int(entry.name) == me else _part(cmdline, comm)
        if part:
            used[part] += seconds
    return used


def per_report(before: Counter[str], after: Counter[str], reports: int) -> dict[str, float]:
    """CPU milliseconds per report for each part between two snapshots, largest first."""
    if reports <= 0:
        return {}
    spent = {part: (after[part] - before.get(part, 0.0)) * 1000 / reports for part in after}
    return dict(sorted(((p, ms) for p, ms in spent.items() if ms > 0), key=lambda item: -item[1]))
