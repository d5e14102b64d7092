"""The gateway worker's jobs: delivery of stored rows, the sweep, and the idempotency purge."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from services.gateway.delivery.service import DELIVERY_JOB
from services.gateway.idempotency.models import IdempotencyRecord
from services.gateway.settings import GatewaySettings
from services.gateway.worker import deliver_row, purge_idempotency_records, sweep_deliveries, worker_settings
from services.kit import clock

from .conftest import Gateway


@pytest.fixture
def gateway(module_gateway: Gateway) -> Gateway:
    module_gateway.queue.enqueued.clear()
    return module_gateway


def worker_context(gateway: Gateway) -> dict[str, Any]:
    """The context the worker's start-up builds, with contacts reached in process."""
    return {
        "db": gateway.app.state.db,
        "settings": gateway.app.state.settings,
        "clients": {"contacts": gateway.app.state.clients["contacts"]},
    }


async def open_link(gateway: Gateway, contact_id: str) -> tuple[str, str]:
    token = gateway.app.state.token_signer.sign_open(f"<{uuid.uuid4().hex}@nurture.example>", contact_id)
    response = await gateway.client.get(f"/t/o/{token}")
    assert response.status_code == 200
    [(table, row_id)] = gateway.queue.enqueued
    gateway.queue.enqueued.clear()
    return table, row_id


async def new_contact(gateway: Gateway) -> str:
    response = await gateway.client.post("/v1/contacts", json={"email": f"w-{uuid.uuid4().hex[:10]}@example.com"}, headers=gateway.auth)
    assert response.status_code == 201
    return response.json()["id"]  # type: ignore[no-any-return]


def test_worker_registers_jobs() -> None:
    settings = worker_settings(GatewaySettings())

    names = {function.name for function in settings.functions}  # type: ignore[attr-defined]

    assert names == {"consume_event", "consume_events", DELIVERY_JOB}


async def test_delivery_job_sends_row(gateway: Gateway) -> None:
    contact_id = await new_contact(gateway)
    table, row_id = await open_link(gateway, contact_id)

    first = await deliver_row(worker_context(gateway), table, row_id)
    again = await deliver_row(worker_context(gateway), table, row_id)
    timeline = await gateway.client.get(f"/v1/contacts/{contact_id}/timeline", headers=gateway.auth)

    assert first == "delivered"
    assert again == "delivered"
    assert [event["id"] for event in timeline.json()["items"]] == [row_id]


async def test_sweep_finds_row_whose_job_was_lost(gateway: Gateway) -> None:
    contact_id = await new_contact(gateway)
    _, row_id = await open_link(gateway, contact_id)

    clock.advance(timedelta(seconds=11))
    await sweep_deliveries(worker_context(gateway))
    timeline = await gateway.client.get(f"/v1/contacts/{contact_id}/timeline", headers=gateway.auth)

    assert [event["id"] for event in timeline.json()["items"]] == [row_id]


async def test_purge_deletes_expired_records(gateway: Gateway) -> None:
    key = str(uuid.uuid4())
    headers = {**gateway.auth, "Idempotency-Key": key}
    await gateway.client.post("/v1/contacts", json={"email": f"p-{uuid.uuid4().hex[:10]}@example.com"}, headers=headers)
    context = worker_context(gateway)
    context["idempotency_purged_at"] = float("-inf")

    clock.advance(timedelta(hours=25))
    await purge_idempotency_records(context)

    async with gateway.app.state.db.session() as session:
        left = (await session.exec(select(IdempotencyRecord).where(IdempotencyRecord.idempotency_key == key))).all()
    assert left == []
    assert context["idempotency_purged_at"] > float("-inf")
