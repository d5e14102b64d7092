"""Running services in the test process and as real child processes."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI

from services.cli import services as registry
from services.cli.supervisor import Platform, PlatformConfig, free_port
from services.gateway.keys.service import create_key
from services.kit.db import Database
from services.kit.http import INTERNAL_TOKEN_HEADER, ServiceClient
from services.kit.settings import SERVICE_NAMES
from tests.support.environment import TestEnvironment
from tests.support.threads import in_thread


@asynccontextmanager
async def running_app(service: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """Start a service's app with its lifespan and return it with a client that talks to it in-process."""
    app = registry.create_app(service)
    async with app.router.lifespan_context(app):
        token = app.state.settings.internal_token
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url=f"http://{service}", headers={INTERNAL_TOKEN_HEADER: token}
        ) as client:
            yield app, client


def route_in_process(caller: FastAPI, service: str, target: FastAPI) -> None:
    """Make `caller` reach `target` through ASGI instead of the network (both are real apps)."""
    settings = caller.state.settings
    caller.state.clients[service] = ServiceClient(
        service, f"http://{service}", internal_token=settings.internal_token,
        transport=httpx.ASGITransport(app=target),
    )


@dataclass
class RunningPlatform:
    platform: Platform
    gateway_url: str
    api_key: str
    # The platform's own databases and namespace, apart from the session's.
    environment: TestEnvironment

    @property
    def mail_dir(self) -> Path:
        """The SMTP sink's folder: the sink child keeps its messages under NURTURE_DATA_DIR."""
        return Path(self.environment.env["NURTURE_DATA_DIR"]) / "mail"

    async def new_key(self, name: str, scopes: list[str], rate_limit: int | None = None) -> str:
        """Create an API key in the platform's gateway database and return it."""
        return await _new_key(self.environment, name, scopes, rate_limit)

    def client(self, **kwargs: object) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        return httpx.AsyncClient(base_url=self.gateway_url, headers=headers, timeout=30.0, **kwargs)  # type: ignore[arg-type]


async def _new_key(environment: TestEnvironment, name: str, scopes: list[str], rate_limit: int | None = None) -> str:
    database = Database(environment.database_urls["gateway"])
    try:
        async with database.session() as session:
            _, key = await create_key(session, name=name, scopes=scopes, rate_limit=rate_limit)
        return key
    finally:
        await database.dispose()


def start_platform(environment: TestEnvironment) -> RunningPlatform:
    """Start all services and workers as real processes on the environment's databases and Redis."""
    ports = {service: free_port() for service in SERVICE_NAMES}
    data_dir = environment.root / "platform"
    config = PlatformConfig(
        data_dir=data_dir,
        redis_url=environment.redis_url,
        ports=ports,
        smtp_port=free_port(),
        database_urls=environment.database_urls,
        extra_env=environment.env,
    )
    platform = Platform(config, report=lambda line: print(f"[platform] {line}"))
    platform.start()
    try:
        platform.wait_ready(timeout_s=90)
    except Exception:
        platform.stop()
        raise
    platform.supervise_in_background()
    key = in_thread(lambda: asyncio.run(_new_key(environment, "tests", ["*"])))
    return RunningPlatform(platform, f"http://127.0.0.1:{ports['gateway']}", key, environment)
