"""The FastAPI application every service is built on.

`create_service_app` gives a service its lifespan (database, Redis, outbox relay, clients of the
other services), correlation ids on every request, problem-details errors, `/healthz`, `/readyz` and
`/metrics`. The service adds its own routers.
"""

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from arq.connections import ArqRedis
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from redis.asyncio import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.kit.correlation import CORRELATION_HEADER, correlation_id_var, new_correlation_id
from services.kit.db import Database
from services.kit.http import INTERNAL_TOKEN_HEADER, ServiceClient
from services.kit.logging import get_logger
from services.kit.metrics import install_metrics
from services.kit.outbox import Outbox, stop_task
from services.kit.problems import Unauthorized, Unavailable, install_problem_handlers, problem_response
from services.kit.queue import deserialize_job, serialize_job
from services.kit.settings import ServiceSettings

log = get_logger(__name__)

Hook = Callable[[FastAPI], Awaitable[None]]


def open_queue(redis_url: str) -> ArqRedis:
    """Open an arq Redis client without connecting, so a service starts even while Redis is down."""
    pool = ConnectionPool.from_url(redis_url, socket_connect_timeout=3, socket_timeout=10, retry_on_timeout=True)
    return ArqRedis(connection_pool=pool, job_serializer=serialize_job, job_deserializer=deserialize_job)


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    routers: Sequence[APIRouter] = (),
    outbox: Outbox | None = None,
    clients: Sequence[str] = (),
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    internal: bool = True,
    **fastapi_options: Any,
) -> FastAPI:
    """Build a service's FastAPI app; `clients` names the services it calls over HTTP."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.db = Database(settings.database_url, pool_size=settings.database_pool_size)
        app.state.redis = open_queue(settings.redis_url)
        app.state.outbox = outbox
        app.state.clients = {
            name: ServiceClient(
                name,
                settings.url_of(name),
                internal_token=settings.internal_token,
                timeout_s=settings.http_timeout_s,
            )
            for name in clients
        }
        relay: asyncio.Task[None] | None = None
        stop_relay = asyncio.Event()
        if outbox is not None:
            outbox.listen_for_commits()
            interval_s = settings.sweep_interval_ms / 1000
            relay = asyncio.create_task(
                outbox.run(app.state.db, app.state.redis, interval_s=interval_s, sweep=False, stop=stop_relay)
            )
        for hook in on_startup:
            await hook(app)
        log.info("service.started", host=settings.host, port=settings.port, database=app.state.db.dialect)

        yield

        for hook in on_shutdown:
            await hook(app)
        if relay is not None:
            await stop_task(relay, stop_relay, name="outbox.relay")
        for client in app.state.clients.values():
            await client.aclose()
        await app.state.redis.aclose()
        await app.state.db.dispose()
        log.info("service.stopped")

    app = FastAPI(title=title, lifespan=lifespan, **fastapi_options)
    install_problem_handlers(app)
    install_metrics(app, settings.service_name)
    _install_correlation(app)
    _install_redis_errors(app)
    app.include_router(_health_router())

    dependencies = [Depends(require_internal_token)] if internal else []
    for router in routers:
        app.include_router(router, dependencies=dependencies)
    return app


def keep_connection_on_error(app: ASGIApp) -> ASGIApp:
    """Wrap an app for uvicorn so that an error after a complete 500 response keeps the connection open.

    Starlette sends the 500 of an unexpected error and then raises the error again, and uvicorn
    closes the connection when an app raises after its response started. A caller that sent its
    next request on that kept-alive connection, as the gateway's pooled client does, then fails
    through no fault of its own. The problem handler has logged the error already.
    """

    async def contained(scope: Scope, receive: Receive, send: Send) -> None:
        complete = False

        async def send_and_watch(message: Message) -> None:
            nonlocal complete
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True

        try:
            await app(scope, receive, send_and_watch)
        except Exception:
            if not complete:
                raise

    return contained


def _install_correlation(app: FastAPI) -> None:
    @app.middleware("http")
    async def _correlation(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        value = request.headers.get(CORRELATION_HEADER) or new_correlation_id()
        token = correlation_id_var.set(value[:64])
        try:
            response = await call_next(request)
        finally:
            correlation_id_var.reset(token)
        response.headers[CORRELATION_HEADER] = value[:64]
        return response


def _install_redis_errors(app: FastAPI) -> None:
    async def _redis_down(request: Request, error: Exception) -> JSONResponse:
        log.warning("request.redis_unavailable", path=request.url.path, error=repr(error))
        return problem_response(Unavailable("the queue cannot be reached; retry shortly"), request)

    app.add_exception_handler(RedisConnectionError, _redis_down)
    app.add_exception_handler(RedisTimeoutError, _redis_down)


def _health_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Report that the process is alive."""
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """Report whether the database and Redis can be reached."""
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(request.app.state.db.ping(), timeout=3)
            checks["database"] = "ok"
        except Exception as error:  # noqa: BLE001 - any failure means not ready
            checks["database"] = f"unavailable: {type(error).__name__}"
        try:
            await asyncio.wait_for(request.app.state.redis.ping(), timeout=3)
            checks["redis"] = "ok"
        except Exception as error:  # noqa: BLE001 - any failure means not ready
            checks["redis"] = f"unavailable: {type(error).__name__}"
        ready = all(value == "ok" for value in checks.values())
        headers = {} if ready else {"Retry-After": "5"}
        return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503, headers)

    return router


async def require_internal_token(request: Request) -> None:
    """Accept only calls that carry the platform's internal token (from the gateway or a service)."""
    expected: str = request.app.state.settings.internal_token
    given = request.headers.get(INTERNAL_TOKEN_HEADER, "")
    if not secrets.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("internal endpoints need the platform's internal token")


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Provide a database session for one request; the handler's service function commits."""
    async with request.app.state.db.session() as session:
        yield session


def get_outbox(request: Request) -> Outbox:
    outbox: Outbox | None = request.app.state.outbox
    if outbox is None:
        raise RuntimeError("this service publishes no events")
    return outbox


def get_client(service: str) -> Callable[[Request], ServiceClient]:
    def _client(request: Request) -> ServiceClient:
        return request.app.state.clients[service]  # type: ignore[no-any-return]

    return _client
