"""Issue 16: a bounded schemathesis run over every service's OpenAPI document, in `make test`.

Against the real services as real processes (uvicorn, PostgreSQL, Kafka; `tests/e2e/processes.py`),
not in-process ASGI: the failures this guards against lived in the layers ASGI tests skip (a
dropped connection after a 500, bodies read before authentication, the database refusing NUL).

Each operation gets a fixed budget of generated cases (positive and negative, derandomized, no
example database), so a run is repeatable and bounded (see EXAMPLES_PER_OPERATION). A case
fails on any 5xx, a status code its operation does not document, or an answer that does not
match its documented schema or content type (problem+json for every error).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.activities.app import create_app as create_activities_app
from services.claims.app import create_app as create_claims_app
from services.counseling.app import create_app as create_counseling_app
from services.mediation.app import create_app as create_mediation_app
from services.membership.app import create_app as create_membership_app
from shared.kafka import ensure_topics
from tests.e2e.processes import ServiceProcess
from tests.infra import Infra

pytestmark = pytest.mark.e2e

#: Generated cases per operation (positive and negative), the same for every service: the run is
#: bounded by operations x cases, each case by its 10 s request timeout. Five services, 90
#: operations x 100: 5 minutes on two cores shared with other test runs (load ~2.5), of which
#: counseling and mediation took 1.5 and starting the five processes 20 s. UNION_FUZZ_EXAMPLES
#: raises it for a longer hunt (the same seed, more cases) or lowers it for a quick pass.
EXAMPLES_PER_OPERATION = int(os.environ.get("UNION_FUZZ_EXAMPLES", "100"))
STAFF = {"Authorization": "Bearer local-staff-token"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
SERVICES = ("membership", "claims", "activities", "counseling", "mediation")


def _in_thread(coro: Any) -> Any:
    """Run a coroutine on its own loop: these fixtures are sync (schemathesis tests are)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _create_databases(admin_url: str, names: list[str]) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        for name in names:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def _drop_databases(admin_url: str, names: list[str]) -> None:
    admin = await asyncpg.connect(admin_url)
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def running(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServiceProcess]]:
    suffix = uuid.uuid4().hex[:10]
    databases = {s: f"fuzz_{s}_{suffix}" for s in SERVICES}
    topics = {s: f"fuzz.{suffix}.{s}.events" for s in SERVICES}
    _in_thread(_create_databases(infra.admin_url, list(databases.values())))
    _in_thread(ensure_topics(infra.kafka, topics.values()))
    base = infra.admin_url.rpartition("/")[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
        "UNION_LOG_LEVEL": "WARNING",
        "MEMBERSHIP_TOPIC": topics["membership"],
        "CLAIMS_TOPIC": topics["claims"],
        "CLAIMS_MEMBERSHIP_TOPIC": topics["membership"],
        "MEMBERSHIP_CLAIMS_TOPIC": topics["claims"],
        "MEMBERSHIP_ACTIVITIES_TOPIC": topics["activities"],
        "MEMBERSHIP_MEDIATION_TOPIC": topics["activities"].replace(".activities.", ".mediation."),
        "ACTIVITIES_TOPIC": topics["activities"],
        "ACTIVITIES_MEMBERSHIP_TOPIC": topics["membership"],
        "COUNSELING_TOPIC": topics["counseling"],
        "COUNSELING_MEMBERSHIP_TOPIC": topics["membership"],
        "MEDIATION_TOPIC": topics["mediation"],
        "MEDIATION_MEMBERSHIP_TOPIC": topics["membership"],
        "UNION_CONSUMER_GROUP_PREFIX": f"fuzz.{suffix}.",
    }
    logs: Path = tmp_path_factory.mktemp("fuzz")
    procs = {
        s: ServiceProcess(s, {**common, f"{s.upper()}_DATABASE_URL": f"{base}/{databases[s]}"}, logs)
        for s in SERVICES
    }
    try:
        for proc in procs.values():  # side by side: five one after another took ~40 s under load
            proc.launch()
        for proc in procs.values():
            proc.wait_ready()
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()
        _in_thread(_drop_databases(infra.admin_url, list(databases.values())))
    for proc in procs.values():
        text = proc.log.read_text()
        assert "Traceback" not in text, f"{proc.name} logged a traceback:\n{text[-3000:]}"


def test_the_served_documents_are_the_fuzzed_ones(running: dict[str, ServiceProcess]) -> None:
    """The cases come from the apps' documents built at collection; the processes serve these."""
    import httpx

    for name, doc in (
        ("membership", _MEMBERSHIP_DOC),
        ("claims", _CLAIMS_DOC),
        ("activities", _ACTIVITIES_DOC),
        ("counseling", _COUNSELING_DOC),
        ("mediation", _MEDIATION_DOC),
    ):
        assert httpx.get(f"{running[name].url}/openapi.json", timeout=10).json() == doc


# Loaded at collection from the apps themselves (nothing is started by building them): the lazy
# ``schemathesis.pytest.from_fixture`` loader of schemathesis 4.32 breaks on pytest 9 (it sets
# ``node._nodeid``, which pytest 9 no longer has).
_MEMBERSHIP_DOC = create_membership_app().openapi()
_CLAIMS_DOC = create_claims_app().openapi()
membership = schemathesis.openapi.from_dict(_MEMBERSHIP_DOC)
claims = schemathesis.openapi.from_dict(_CLAIMS_DOC)
_ACTIVITIES_DOC = create_activities_app().openapi()
activities = schemathesis.openapi.from_dict(_ACTIVITIES_DOC)
_COUNSELING_DOC = create_counseling_app().openapi()
counseling = schemathesis.openapi.from_dict(_COUNSELING_DOC)
_MEDIATION_DOC = create_mediation_app().openapi()
mediation = schemathesis.openapi.from_dict(_MEDIATION_DOC)

_budget = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,  # the fixed seed: the same cases every run
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


@membership.parametrize()
@_budget
def test_membership_openapi(case: schemathesis.Case, running: dict[str, ServiceProcess]) -> None:
    case.call_and_validate(base_url=running["membership"].url, headers=STAFF, checks=CHECKS, timeout=10)


@claims.parametrize()
@_budget
def test_claims_openapi(case: schemathesis.Case, running: dict[str, ServiceProcess]) -> None:
    case.call_and_validate(base_url=running["claims"].url, headers=STAFF, checks=CHECKS, timeout=10)


@activities.parametrize()
@_budget
def test_activities_openapi(case: schemathesis.Case, running: dict[str, ServiceProcess]) -> None:
    case.call_and_validate(base_url=running["activities"].url, headers=STAFF, checks=CHECKS, timeout=10)


@counseling.parametrize()
@_budget
def test_counseling_openapi(case: schemathesis.Case, running: dict[str, ServiceProcess]) -> None:
    case.call_and_validate(base_url=running["counseling"].url, headers=STAFF, checks=CHECKS, timeout=10)


@mediation.parametrize()
@_budget
def test_mediation_openapi(case: schemathesis.Case, running: dict[str, ServiceProcess]) -> None:
    case.call_and_validate(base_url=running["mediation"].url, headers=STAFF, checks=CHECKS, timeout=10)
