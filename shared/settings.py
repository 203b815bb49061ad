"""Settings read from the environment. Production mode refuses every local default."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Self

from pydantic import Field, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url


@dataclass(frozen=True)
class Grant:
    """What one API token stands for: a role, and optionally who (a counsellor is a person, not
    just a role) and for which union (a station's staff see their station's casework)."""

    role: str
    subject: str | None = None
    union_id: str | None = None


#: Documented local-development tokens (docs/DESIGN.md §4). Never accepted in production mode.
LOCAL_GRANTS: dict[str, Grant] = {
    "local-staff-token": Grant("staff"),
    "local-counselor-token": Grant("counselor", subject="counselor-1"),
    "local-counselor-2-token": Grant("counselor", subject="counselor-2"),
    "local-supervisor-token": Grant("supervisor"),
    "local-integrator-token": Grant("integrator"),
    # Mediation: staff members who mediate sessions and keep their minutes.
    "local-mediator-token": Grant("staff", subject="mediator-1"),
    "local-mediator-2-token": Grant("staff", subject="mediator-2"),
}
LOCAL_TOKENS: dict[str, str] = {token: grant.role for token, grant in LOCAL_GRANTS.items()}


def parse_grants(raw: str) -> dict[str, Grant]:
    """``UNION_API_TOKENS``: ``{"token": "role"}`` or ``{"token": {"role": ..., "subject": ...,
    "union_id": ...}}`` entries, mixed freely."""
    parsed: Any = json.loads(raw)
    if not isinstance(parsed, dict):
        raise ValueError("UNION_API_TOKENS must be a JSON object of token -> role")
    grants: dict[str, Grant] = {}
    for number, (token, entry) in enumerate(parsed.items(), 1):
        if isinstance(entry, str):
            grants[str(token)] = Grant(entry)
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("role"), str):
            raise ValueError(f"UNION_API_TOKENS: entry #{number} must be a role or an object with a role")
        unknown = set(entry) - {"role", "subject", "union_id"}
        if unknown or not all(isinstance(v, str) for v in entry.values()):
            raise ValueError(
                f"UNION_API_TOKENS: entry #{number} may hold only string role, subject and union_id"
            )
        grants[str(token)] = Grant(entry["role"], entry.get("subject"), entry.get("union_id"))
    return grants


#: A 32-byte key everybody knows (it is in the source), so only good for local runs.
LOCAL_KEY = base64.b64encode(b"local-development-key-not-secret").decode()
#: The documented local token Prometheus presents for /metrics. Never accepted in production mode.
LOCAL_METRICS_TOKEN = "local-metrics-token"  # noqa: S105 - documented, local only
LOCAL_DB_PASSWORD_SUFFIX = "-local"  # noqa: S105 - the documented local-only password


#: Shortest API token production mode accepts: 32 characters (`openssl rand -hex 32` gives 64).
MIN_TOKEN_LENGTH = 32
#: Words that mark a value copied from documentation rather than generated.
PLACEHOLDER_WORDS = (
    "changeme",
    "change-me",
    "change_me",
    "replace",
    "example",
    "placeholder",
    "your-",
    "your_",
    "todo",
    "dummy",
    "sample",
    "secret-token",
    "xxxx",
)


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be a production API token, or None. Never repeats the token."""
    lowered = token.lower()
    if "<" in token or ">" in token or "{" in token or "}" in token:
        return "is a placeholder (contains <, >, { or })"
    if word := next((w for w in PLACEHOLDER_WORDS if w in lowered), None):
        return f"is a placeholder (contains {word!r})"
    if len(token) < MIN_TOKEN_LENGTH:
        return f"is {len(token)} characters long; at least {MIN_TOKEN_LENGTH} are required"
    if len(set(token)) < 8 or token.strip() != token:
        return "is not random enough (too few distinct characters, or padded with spaces)"
    return None


class Mode(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class CommonSettings(BaseSettings):
    """What every service needs. Service-specific settings subclass it with an env prefix."""

    model_config = SettingsConfigDict(env_prefix="UNION_", extra="ignore")

    mode: Mode = Mode.DEVELOPMENT
    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    #: JSON object {token: role}. Empty means the local development tokens.
    api_tokens: str = Field(default="", repr=False)  # secrets stay out of reprs (and so logs)
    #: base64 of 32 bytes: encrypts and hashes personal identifiers (national ID, phone).
    pii_key: str = Field(default=LOCAL_KEY, repr=False)
    log_level: str = "INFO"
    consumer_max_attempts: int = 5
    #: How long start-up waits for a database that is not reachable yet (then it fails).
    db_wait_seconds: float = 120.0
    #: Records fetched per poll (across the partitions a process owns): the upper bound of one
    #: partition's batch transaction.
    consumer_max_records: int = 500
    #: A fetch returns once this many bytes are waiting, or after the wait below: under load one
    #: transaction takes many events (a batch's fixed cost — BEGIN, inbox, positions, COMMIT,
    #: the offset commit — is shared), instead of one fetch and one transaction per event.
    consumer_fetch_min_bytes: int = Field(default=64 * 1024, ge=1, le=50 * 1024 * 1024)
    #: The longest a reaction on a user-visible path (claims reacting to a report) waits for its
    #: batch to fill: the latency one such hop may add when traffic is light.
    consumer_fetch_wait_ms: int = Field(default=20, ge=0, le=5000)
    #: The same for read models and timelines (``subscribe(..., background=True)``), where a
    #: quarter of a second is invisible and larger batches save the most.
    consumer_background_fetch_wait_ms: int = Field(default=250, ge=0, le=5000)
    #: Put before every consumer group id (``<prefix><service>.<consumer>``): lets two systems (or
    #: test runs) share one Kafka cluster without joining each other's groups.
    consumer_group_prefix: str = ""
    relay_poll_interval: float = 1.0
    #: Milliseconds the relay lets further commits land after a wake-up before it reads the
    #: outbox (0: at once): fewer, fuller batches for latency on every hop. Off by default:
    #: measured at 5 ms (bench.e2e, 100 reports/s) it saved 4 % of the CPU per report and
    #: added 12 ms to the median, 22 ms to the p99, and the burst rate did not move.
    relay_gather_ms: int = Field(default=0, ge=0, le=1000)
    #: Commands a route marks as grouped (the injury-report intake) share one transaction with
    #: those that arrive while it runs, at most this many (1: each alone). shared/group_commit.py.
    group_commit_max: int = Field(default=16, ge=1, le=256)
    #: False when Debezium publishes ``events`` instead (deploy/k8s/cdc): no in-process relay.
    relay_enabled: bool = True
    #: Requests with a larger body are refused with 413 while they stream (never read whole).
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    #: One event's data may hold at most this many bytes (Kafka's default limit is ~1 MB).
    max_event_bytes: int = Field(default=256 * 1024, ge=1024, le=900 * 1024)
    #: Bearer token Prometheus presents on /metrics (the API tokens are not accepted there).
    metrics_token: str = LOCAL_METRICS_TOKEN
    #: HTTP worker processes (``UNION_HTTP_WORKERS``). Each worker is a full replica (relay
    #: candidate, consumer group member, own connection pool): one Python process is CPU-bound
    #: on one core, so on a single host more workers serve more requests. In Kubernetes, scale
    #: replicas instead: a scrape of /metrics sees only the one worker that answered it.
    http_workers: int = Field(default=1, ge=1, le=16)

    def grants(self) -> dict[str, Grant]:
        return parse_grants(self.api_tokens) if self.api_tokens else dict(LOCAL_GRANTS)

    def tokens(self) -> dict[str, str]:
        """Token -> role (the grants without their subjects)."""
        return {token: grant.role for token, grant in self.grants().items()}

    def key_bytes(self, value: str) -> bytes:
        raw = base64.b64decode(value)
        if len(raw) != 32:
            raise ValueError("keys must be base64 of exactly 32 bytes")
        return raw

    @model_validator(mode="after")
    def _refuse_local_defaults_in_production(self) -> Self:
        if self.mode is Mode.PRODUCTION:
            problems = []
            if not self.api_tokens or set(self.tokens()) & set(LOCAL_TOKENS):
                problems.append("UNION_API_TOKENS must be set, without the local tokens")
            else:
                for number, (token, role) in enumerate(self.tokens().items(), 1):
                    if why := token_problem(token):
                        # Which one by position and role: the token itself is a secret.
                        problems.append(f"UNION_API_TOKENS: token #{number} (role {role!r}) {why}")
            if not self.metrics_token or self.metrics_token == LOCAL_METRICS_TOKEN:
                problems.append("UNION_METRICS_TOKEN must be set to a secret token")
            if self.pii_key == LOCAL_KEY:
                problems.append("UNION_PII_KEY must be set to a secret key")
            problems.extend(self._production_problems())
            if problems:
                raise ValueError("refusing to start in production mode: " + "; ".join(problems))
        return self

    def _production_problems(self) -> list[str]:
        return []


class ServiceSettings(CommonSettings):
    """The settings of one service: the common ones plus ``<SERVICE>_DATABASE_URL``,
    ``<SERVICE>_DATABASE_PASSWORD``, ``<SERVICE>_PORT``, ``<SERVICE>_HOST`` and ``<SERVICE>_TOPIC``.

    A service subclasses it naming itself and its port::

        class ClaimsSettings(ServiceSettings):
            service = "claims"
            default_port = 8002

    The environment names and defaults are then derived from ``service`` when the subclass is
    created; the fields are declared (and typed) once, here."""

    #: The service's name: the prefix of its environment variables, its database and its topic.
    service: ClassVar[str] = ""
    default_port: ClassVar[int] = 0

    database_url: str = Field(default="", repr=False)
    #: Set, it replaces the URL's password; the URL is then rendered with it percent-encoded,
    #: so a generated password with "@", "/", "%"... works without the operator encoding it.
    database_password: str = Field(default="", repr=False)
    port: int = 0
    host: str = "127.0.0.1"
    topic: str = ""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if not cls.service:
            return
        prefix, service = cls.service.upper(), cls.service
        named = {
            "database_url": (
                f"postgresql+asyncpg://{service}:{service}{LOCAL_DB_PASSWORD_SUFFIX}@127.0.0.1:5432/{service}"
            ),
            "database_password": "",
            "port": cls.default_port,
            "host": "127.0.0.1",
            "topic": f"{service}.events",
        }
        for name, default in named.items():
            cls.__pydantic_fields__[name] = FieldInfo.merge_field_infos(
                cls.__pydantic_fields__[name], default=default, validation_alias=f"{prefix}_{name.upper()}"
            )
        cls.model_rebuild(force=True)

    @model_validator(mode="after")
    def _password_into_url(self) -> Self:
        if self.database_password:
            url = make_url(self.database_url).set(password=self.database_password)
            self.database_url = url.render_as_string(hide_password=False)
        return self

    def _production_problems(self) -> list[str]:
        if LOCAL_DB_PASSWORD_SUFFIX + "@" in self.database_url:
            return [f"{self.service.upper()}_DATABASE_URL must not use the local development password"]
        return []
