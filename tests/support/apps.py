"""Running services in the test process and as real child processes."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI

from services.cli import services as registry
from services.cli.keys import create
from services.cli.supervisor import Platform, PlatformConfig, free_port
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
    mail_dir: Path

    def client(self, **kwargs: object) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        return httpx.AsyncClient(base_url=self.gateway_url, headers=headers, timeout=30.0, **kwargs)  # type: ignore[arg-type]


def start_platform(environment: TestEnvironment) -> RunningPlatform:
    """Start all services and workers as real processes on this session's databases and Redis."""
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
    _, key = in_thread(lambda: asyncio.run(create("tests", ["*"])))
    return RunningPlatform(platform, f"http://127.0.0.1:{ports['gateway']}", key, data_dir / "mail")
