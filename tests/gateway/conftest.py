"""Fixtures of the gateway tests: apps routed in process, API keys, deliveries run by hand."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI

from services.gateway.delivery.service import Deliverer
from services.gateway.delivery.tables import DELIVERY_MODELS
from services.gateway.keys.service import create_key
from tests.support.apps import route_in_process, running_app

Apps = tuple[FastAPI, httpx.AsyncClient]


@dataclass
class RecordingQueue:
    """Stands in for the delivery queue, so tests run deliveries themselves and in order."""

    enqueued: list[tuple[str, str]] = field(default_factory=list)

    async def enqueue(self, table: str, row_ids: list[str]) -> None:
        self.enqueued.extend((table, row_id) for row_id in row_ids)


@dataclass
class Gateway:
    """The gateway app with contacts routed in process, a key with every scope and its client."""

    app: FastAPI
    client: httpx.AsyncClient
    key: str
    queue: RecordingQueue

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def deliverer(self, provider_http: httpx.AsyncClient | None = None) -> Deliverer:
        return Deliverer(
            self.app.state.db,
            DELIVERY_MODELS,
            contacts=self.app.state.clients["contacts"],
            provider_http=provider_http,
            max_backoff_s=300,
        )

    async def deliver_enqueued(self, provider_http: httpx.AsyncClient | None = None) -> list[str]:
        """Run every delivery the routes enqueued so far; return the outcomes in order."""
        deliverer = self.deliverer(provider_http)
        outcomes = [await deliverer.deliver(table, row_id) for table, row_id in self.queue.enqueued]
        self.queue.enqueued.clear()
        return outcomes


async def new_key(app: FastAPI, scopes: list[str] | None = None, rate_limit: int | None = None) -> str:
    async with app.state.db.session() as session:
        _, key = await create_key(session, name=f"test-{uuid.uuid4().hex[:8]}", scopes=scopes or ["*"], rate_limit=rate_limit)
    return key


@pytest.fixture
async def gateway(gateway_app: Apps, contacts_app: Apps) -> Gateway:
    app, client = gateway_app
    route_in_process(app, "contacts", contacts_app[0])
    queue = RecordingQueue()
    app.state.delivery_queue = queue
    # A high limit keeps rate limiting out of the way of tests about other things.
    return Gateway(app, client, await new_key(app, rate_limit=100_000), queue)


@asynccontextmanager
async def gateway_with_contacts() -> AsyncIterator[Gateway]:
    """Start the gateway and contacts apps, routed in process; for fixtures wider than one test."""
    async with running_app("gateway") as (app, client), running_app("contacts") as (contacts, _):
        route_in_process(app, "contacts", contacts)
        queue = RecordingQueue()
        app.state.delivery_queue = queue
        yield Gateway(app, client, await new_key(app, rate_limit=100_000), queue)


@pytest.fixture(scope="module")
async def module_gateway() -> AsyncIterator[Gateway]:
    """One gateway with contacts for a whole test module; tests must undo what they change."""
    async with gateway_with_contacts() as gateway:
        yield gateway


def unique_email(label: str = "lead") -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}@example.com"
