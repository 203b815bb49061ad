"""Wiring shared by every service process: database, event store, relay, consumers, HTTP app."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import Principal, TokenAuthority
from shared.clock import Clock, beijing_today
from shared.consumer import KafkaConsumerLoop
from shared.crypto import FieldCipher
from shared.dispatch import HandlerTable
from shared.edge import EdgeMiddleware, refuse_nul_in_path_params
from shared.events import EventRegistry
from shared.eventstore import EventStore
from shared.group_commit import GroupCommit
from shared.http import ProblemError, install_problem_handlers
from shared.inbox import InboxConsumer, LockPlan, Reaction
from shared.kafka import awaited_topics, dlq_topic, ensure_or_await_topics
from shared.locks import LockSpace, xact_lock_sql
from shared.logs import configure as configure_logs
from shared.logs import log_context, logging_config
from shared.metrics import ServiceMetrics, instrument_http
from shared.migrations import upgrade_to_head
from shared.openapi import document_security_and_problems
from shared.relay import OutboxRelay
from shared.settings import CommonSettings, Mode, ServiceSettings
from shared.tables import idempotency_keys
from shared.tracing import TracingMiddleware, configure_tracing
from shared.tracing import shutdown as tracing_shutdown
from shared.unit_of_work import InlineProjection, UnitOfWork, retrying

log = logging.getLogger(__name__)
T = TypeVar("T")

CORRELATION_HEADER = "X-Correlation-ID"


@dataclass
class Subscription:
    """A consumer this service runs, and the upstream topic it reads."""

    consumer: InboxConsumer
    topic: str
    loop: KafkaConsumerLoop

    @property
    def group_id(self) -> str:
        return self.loop.group_id

    @group_id.setter
    def group_id(self, value: str) -> None:
        self.loop.group_id = value


@dataclass
class ServiceRuntime:
    name: str
    settings: ServiceSettings
    registry: EventRegistry
    migrations: Path
    projections: tuple[InlineProjection, ...] = ()
    subscriptions: list[Subscription] = field(default_factory=list)
    run_relay: bool = True
    #: The business date every command and reaction is judged against (tests pass ``fixed``).
    clock: Clock = beijing_today

    def __post_init__(self) -> None:
        # UNION_RELAY_ENABLED=false: change data capture (Debezium) publishes instead.
        self.run_relay = self.run_relay and bool(getattr(self.settings, "relay_enabled", True))
        self.engine: AsyncEngine = create_async_engine(
            # No pre-ping: it costs three round trips per checkout (measured: 0.5 ms a command);
            # a connection that died is recycled, and `retrying` retries on an invalidated one.
            self.settings.database_url,
            pool_size=10,
            max_overflow=10,
            pool_recycle=1800,
            hide_parameters=True,  # error messages (and so logs) never carry bound values
            connect_args=connect_args(self.settings.database_url),
        )
        self.store = EventStore(self.name, self.registry, max_event_bytes=self.settings.max_event_bytes)
        #: Production topics belong to the cluster (Strimzi KafkaTopic resources): a service that
        #: created one would give it its own replication factor. Only development creates them.
        self.create_topics: bool = self.settings.mode is not Mode.PRODUCTION
        self.cipher = FieldCipher(self.settings.key_bytes(self.settings.pii_key))
        self.relay = OutboxRelay(
            self.engine,
            self.store,
            self.settings.topic,
            self.settings.kafka_bootstrap_servers,
            poll_interval=self.settings.relay_poll_interval,
            create_topics=self.create_topics,
            gather=self.settings.relay_gather_ms / 1000,
        )
        self.groups = GroupCommit(self.uow, max_size=self.settings.group_commit_max)
        self.metrics = ServiceMetrics(self.engine, self.settings.kafka_bootstrap_servers)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._kafka_ok = False
        self._kafka_checked_at = float("-inf")

    def uow(
        self, correlation_id: uuid.UUID | None = None, causation_id: uuid.UUID | None = None
    ) -> UnitOfWork:
        return UnitOfWork(
            self.engine,
            self.store,
            correlation_id=correlation_id,
            causation_id=causation_id,
            projections=self.projections,
        )

    def consumer(
        self,
        name: str,
        reactions: Mapping[str, Reaction] | HandlerTable[Reaction],
        *,
        locks: LockPlan | None = None,
        projections: tuple[InlineProjection, ...] = (),
        follows: Collection[str] | None = None,
    ) -> InboxConsumer:
        """``follows``: the upstream aggregate types whose streams ``reactions`` depend on (None:
        all); events of other streams are passed over without touching the database."""
        return InboxConsumer(
            name,
            self.engine,
            self.store,
            reactions,
            locks=locks,
            projections=projections or self.projections,
            follows=follows,
        )

    def subscribe(self, consumer: InboxConsumer, topic: str, *, background: bool = False) -> None:
        """Run ``consumer`` on ``topic``. ``background``: it keeps a read model or timeline, not a
        reaction someone waits for, so its fetches may wait longer to fill a batch."""
        group_id = f"{self.settings.consumer_group_prefix}{self.name}.{consumer.name}"
        settings = self.settings
        loop = KafkaConsumerLoop(
            consumer,
            settings.kafka_bootstrap_servers,
            topic,
            group_id,
            max_records=settings.consumer_max_records,
            max_attempts=settings.consumer_max_attempts,
            fetch_min_bytes=settings.consumer_fetch_min_bytes,
            fetch_wait_ms=(
                settings.consumer_background_fetch_wait_ms if background else settings.consumer_fetch_wait_ms
            ),
        )
        self.subscriptions.append(Subscription(consumer, topic, loop))

    async def start(self) -> None:
        configure_tracing(self.name)  # only if OTEL_* asks for it; off by default
        await upgrade_to_head(
            self.migrations, self.settings.database_url, wait_seconds=self.settings.db_wait_seconds
        )
        if self.run_relay:
            self._tasks.append(asyncio.create_task(self.relay.run(self._stop), name="relay"))
        for sub in self.subscriptions:
            self._tasks.append(asyncio.create_task(self._consume(sub), name=f"consumer:{sub.group_id}"))

    async def _consume(self, sub: Subscription) -> None:
        """Kafka may be down at start: keep trying instead of failing the whole process."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                # Subscribing would auto-create a missing topic with the broker's defaults.
                await ensure_or_await_topics(
                    self.settings.kafka_bootstrap_servers,
                    [sub.topic, dlq_topic(sub.topic)],
                    create=self.create_topics,
                    stop=self._stop,
                )
                break
            except Exception as exc:
                log.warning(
                    "consumer %s: broker not reachable (%s); retrying", sub.group_id, type(exc).__name__
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
                delay = min(delay * 2, 10)
        await sub.loop.run(self._stop)

    def consumer_groups(self) -> dict[str, list[str]]:
        """Each consumer group this service runs, with the topics it reads."""
        groups: dict[str, list[str]] = {}
        for sub in self.subscriptions:
            groups.setdefault(sub.group_id, []).append(sub.topic)
        return groups

    def consumed_topics(self) -> list[str]:
        """What the consumers read, and the dead-letter topics they write to."""
        return [t for sub in self.subscriptions for t in (sub.topic, dlq_topic(sub.topic))]

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        await self.engine.dispose()
        # Bounded (tracing.SHUTDOWN_SECONDS): a hung collector must not hold the stop; in a
        # thread, as the flush blocks. A second runtime of the process (tests) restarts it.
        await asyncio.to_thread(tracing_shutdown)

    async def ready(self) -> dict[str, bool]:
        """Can this process serve requests? Only PostgreSQL decides: writes go to the outbox, which
        absorbs a Kafka outage, so a broker down must not take every replica out of its Service."""
        checks = {"database": False}
        with contextlib.suppress(Exception):
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
            checks["database"] = True
        if awaited_topics():
            # Production mode waits for topics it may not create: unready until they exist.
            checks["topics"] = False
        return checks

    async def health(self) -> dict[str, Any]:
        """The detailed view for operators: readiness plus Kafka, the relay and the consumers."""
        checks: dict[str, Any] = dict(await self.ready())
        checks["kafka"] = await self._kafka_reachable()
        checks["relay_leader"] = self.relay.ready.is_set() if self.run_relay else None
        checks["consumers"] = {s.group_id: s.loop.assigned.is_set() for s in self.subscriptions}
        checks["topics"] = not awaited_topics()
        return checks

    async def _kafka_reachable(self) -> bool:
        """Broker metadata answers (cached 5 s). Not "is relay leader": every replica is ready."""
        now = asyncio.get_running_loop().time()
        if now - self._kafka_checked_at < 5:
            return self._kafka_ok
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.settings.kafka_bootstrap_servers, request_timeout_ms=3000
        )
        try:
            await asyncio.wait_for(admin.start(), timeout=3)
            await asyncio.wait_for(admin.list_topics(), timeout=3)
            self._kafka_ok = True
        except Exception:
            self._kafka_ok = False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        self._kafka_checked_at = now
        return self._kafka_ok

    # --- HTTP ---------------------------------------------------------------------------------

    def http_app(self, routers: Sequence[APIRouter], *, title: str, version: str = "1") -> FastAPI:
        @contextlib.asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        app = FastAPI(
            title=title,
            version=version,
            lifespan=lifespan,
            dependencies=[Depends(refuse_nul_in_path_params)],
        )
        app.state.runtime = self
        app.state.auth = TokenAuthority(self.settings.grants())
        install_problem_handlers(app)

        @app.get("/healthz", include_in_schema=False)
        async def healthz() -> dict[str, str]:
            return {"status": "ok"}

        @app.get("/readyz", include_in_schema=False)
        async def readyz() -> JSONResponse:
            checks = await self.ready()
            ok = all(checks.values())
            body: dict[str, Any] = {"ready": ok, "checks": checks}
            if missing := awaited_topics():
                body["missing_topics"] = missing
            return JSONResponse(body, status_code=200 if ok else 503)

        @app.get("/healthz/details", include_in_schema=False)
        async def health_details() -> JSONResponse:
            checks = await self.health()
            return JSONResponse({"ready": checks["database"], "checks": checks})

        metrics_token = self.settings.metrics_token.encode()

        @app.get("/metrics", include_in_schema=False)
        async def metrics(request: Request) -> Response:
            # Its own token (UNION_METRICS_TOKEN), not an API token: Prometheus reads counters,
            # never members. The header is compared in constant time.
            presented = request.headers.get("authorization", "")
            scheme, _, token = presented.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), metrics_token):
                raise ProblemError(
                    401,
                    "Unauthorized",
                    "metrics need UNION_METRICS_TOKEN",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            dlq = [dlq_topic(sub.topic) for sub in self.subscriptions]
            await self.metrics.refresh(self.consumer_groups(), dlq)
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

        for router in routers:
            app.include_router(router, prefix="/v1")
        # The layers, innermost first (each ``add_middleware`` wraps the ones before it):
        # - the edge: refusals (NUL, auth, body size, duplicate keys) and every escaped exception;
        # - the server span: outside the edge, so its refusals and its 500/503 (and their log
        #   lines) belong to the request's trace;
        # - metrics: outside the edge too, so the status recorded is the one the client got (the
        #   edge's 503 for a transient error, not 500) and its refusals are counted;
        # - the correlation id, outermost: every answer, the edge's included, echoes
        #   X-Correlation-ID, and every log line of the request carries it.
        app.add_middleware(EdgeMiddleware, max_body_bytes=self.settings.max_body_bytes)
        app.add_middleware(TracingMiddleware)
        instrument_http(app)
        app.add_middleware(CorrelationMiddleware)
        document_security_and_problems(app)
        return app

    async def command(
        self,
        request: Request,
        principal: Principal,
        work: Callable[[UnitOfWork], Awaitable[dict[str, Any]]],
        *,
        status_code: int,
        body: Any = None,
        grouped: bool = False,
    ) -> JSONResponse:
        """Run a command in one transaction; with an ``Idempotency-Key``, replay the first answer.

        ``grouped``: the command may share its transaction with others that arrive meanwhile
        (shared/group_commit.py), for hot commands that take no locks but their own rows'.

        The key's record is written in the command's own transaction, so "answered" and "done"
        can never disagree; two racing requests with one key: the loser's transaction rolls back
        on the key's primary key and it returns the winner's answer.
        """
        key = request.headers.get("idempotency-key")
        cid: uuid.UUID = request.state.correlation_id

        def run(work: Callable[[UnitOfWork], Awaitable[dict[str, Any]]]) -> Awaitable[dict[str, Any]]:
            if grouped:
                return self.groups.run(cid, work)
            return retrying(lambda: self.uow(cid), work)

        if not key:
            return JSONResponse(await run(work), status_code=status_code)
        if len(key) > 200:
            raise ProblemError(
                422,
                "Unprocessable Content",
                "Idempotency-Key is too long",
                errors=[{"field": "Idempotency-Key", "message": "max 200 chars"}],
            )
        scope = f"{principal.subject}:{request.method}:{request.url.path}"
        payload = body.model_dump(mode="json") if hasattr(body, "model_dump") else body
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

        stored = await self._stored_answer(scope, key, digest)
        if stored is not None:
            return stored

        async def work_and_remember(uow: UnitOfWork) -> dict[str, Any]:
            # Serialise requests with this key: a concurrent retry waits here, then finds the
            # first answer instead of running the command again (and being refused by the domain).
            # Bounded: a request never waits on this lock longer than a client would on us.
            await uow.conn.execute(sa.text("SET LOCAL lock_timeout = '15s'"))
            await uow.conn.execute(
                sa.text(xact_lock_sql(LockSpace.IDEMPOTENCY_KEY)), {"name": f"{scope}|{key}"}
            )
            replay = await self._stored_answer(scope, key, digest, conn=uow.conn)
            if replay is not None:
                raise _Replay(replay)
            result = await work(uow)
            await uow.conn.execute(
                pg_insert(idempotency_keys).values(
                    scope=scope, key=key, request_hash=digest, status_code=status_code, body=result
                )
            )
            return result

        try:
            result = await run(work_and_remember)
        except _Replay as replay:
            return replay.response
        except IntegrityError:
            stored = await self._stored_answer(scope, key, digest)
            if stored is None:
                raise
            return stored
        return JSONResponse(result, status_code=status_code)

    async def _stored_answer(
        self, scope: str, key: str, digest: str, *, conn: AsyncConnection | None = None
    ) -> JSONResponse | None:
        query = sa.select(idempotency_keys).where(
            idempotency_keys.c.scope == scope, idempotency_keys.c.key == key
        )
        if conn is not None:
            row = (await conn.execute(query)).mappings().first()
        else:
            async with self.engine.connect() as own:
                row = (await own.execute(query)).mappings().first()
        if row is None:
            return None
        if row["request_hash"] != digest:
            raise ProblemError(
                422,
                "Unprocessable Content",
                "this Idempotency-Key was already used with a different request body",
                errors=[{"field": "Idempotency-Key", "message": "reused with another body"}],
                code="idempotency_key_reused",
            )
        return JSONResponse(
            row["body"], status_code=row["status_code"], headers={"Idempotent-Replayed": "true"}
        )


#: Server-side TCP keepalive for every session of a service (GUCs sent in the startup packet, so
#: they need no server configuration): PostgreSQL probes a silent client after 10 s, every 5 s,
#: and drops it after 3 missed probes or 30 s of unacknowledged data, instead of the kernel
#: defaults (2 h + 9 x 75 s). That frees what a vanished client held (the relay's advisory lock,
#: row locks) within ~25-30 s. It does not see a *frozen* process whose host still answers TCP:
#: for the relay's lock session that is the lease's job (shared/relay.py, DEFAULT_LEASE_SECONDS).
SESSION_KEEPALIVES: dict[str, str] = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "30000",
}


def connect_args(database_url: str) -> dict[str, Any]:
    """asyncpg connect arguments of every service engine: TLS as ``loopback_without_tls`` says,
    and the server-side keepalives of ``SESSION_KEEPALIVES``."""
    return {**loopback_without_tls(database_url), "server_settings": dict(SESSION_KEEPALIVES)}


def loopback_without_tls(database_url: str) -> dict[str, Any]:
    """asyncpg's default ``sslmode=prefer`` encrypts even a loopback connection, and TLS was a
    fifth of each service's CPU under load (py-spy, bench/e2e.py). A database on this very host
    gains nothing from it, so unless the URL says otherwise it is left out there; any other host
    keeps the driver's default (production names its own ``ssl``/``sslmode``). A multi-host URL
    (``?host=a:5432&host=b:5432``) counts as loopback only if every host is."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if {"ssl", "sslmode"} & set(url.query):
        return {}
    # asyncpg connects to ``?host=`` when it is given, whatever stands before the path: judge both.
    hosts = ({url.host} if url.host else set()) | _query_hosts(url.query)
    if hosts and hosts <= LOOPBACK:
        return {"ssl": False}
    return {}


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _query_hosts(query: Mapping[str, str | tuple[str, ...]]) -> set[str]:
    """The hosts of a multi-host URL (``?host=a:5432&host=b:5432``, SQLAlchemy's form), without
    their ports; an empty set when the URL names none that way."""
    raw = query.get("host", ())
    hosts = (raw,) if isinstance(raw, str) else raw
    return {h.rsplit(":", 1)[0] if h.count(":") == 1 else h for h in hosts}


class CorrelationMiddleware:
    """Every request gets a correlation id: the caller's ``X-Correlation-ID`` if it is a UUID, else
    a new one. Handlers find it in ``request.state.correlation_id``, log lines within the request
    carry it, and the answer echoes it. Pure ASGI (BaseHTTPMiddleware cost a tenth of the intake's
    throughput per layer, bench/intake.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = next((v for k, v in scope.get("headers", ()) if k.lower() == _CORRELATION_KEY), None)
        try:
            cid = uuid.UUID(raw.decode("latin-1")) if raw else uuid.uuid4()
        except ValueError:
            cid = uuid.uuid4()
        # What ``request.state`` reads: Starlette keeps it in the scope.
        scope.setdefault("state", {})["correlation_id"] = cid
        value = str(cid).encode("latin-1")

        async def echoing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != _CORRELATION_KEY]
                message = {**message, "headers": [*headers, (_CORRELATION_KEY, value)]}
            await send(message)

        with log_context(correlation_id=cid):
            await self.app(scope, receive, echoing_send)


_CORRELATION_KEY = CORRELATION_HEADER.lower().encode("latin-1")


class _Replay(Exception):
    """The key was answered while this request waited for it: return that answer."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__("idempotent replay")
        self.response = response


def configure_logging(level: str, service: str = "") -> None:
    """JSON lines on stderr for every logger (shared/logs.py)."""
    configure_logs(service, level)


def serve(app: FastAPI, settings: CommonSettings, host: str, port: int) -> None:
    """Serve ``app``; with ``UNION_HTTP_WORKERS`` > 1, that many worker processes instead, each
    building its own app from the environment (``services.<name>.app:create_app``), so each is a
    full replica: migrations, the relay and consumer groups are already safe with replicas."""
    import uvicorn

    service = app.state.runtime.name
    configure_logging(settings.log_level, service)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": settings.log_level.lower(),
        # uvicorn applies this itself (replacing its coloured default formatters).
        "log_config": logging_config(service, settings.log_level),
        "timeout_graceful_shutdown": 15,
        "access_log": False,
    }
    if settings.http_workers > 1:
        uvicorn.run(
            f"services.{service}.app:create_app", factory=True, workers=settings.http_workers, **options
        )
    else:
        uvicorn.run(app, **options)
