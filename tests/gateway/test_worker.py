"""The gateway worker's jobs: delivery of stored rows, alone and together, the sweep, and the idempotency purge."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from services.gateway.delivery.service import DELIVERY_JOB
from services.cli.supervisor import free_port
from services.gateway.idempotency.models import IdempotencyRecord
from services.gateway.settings import GatewaySettings
from services.gateway.tracking.models import TrackingHit
from services.gateway.worker import deliver_row, purge_idempotency_records, sweep_deliveries, worker_settings
from services.kit import clock
from services.kit.http import ServiceClient

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


async def pending_open(gateway: Gateway, contact_id: str) -> str:
    """Record an open whose delivery job has not run yet, and return its row id."""
    _, row_id = await open_link(gateway, contact_id)
    return row_id


async def stored_hit(gateway: Gateway, row_id: str) -> TrackingHit:
    async with gateway.app.state.db.session() as session:
        row = await session.get(TrackingHit, row_id)
    assert row is not None
    return row


async def test_one_job_delivers_new_rows_together(gateway: Gateway) -> None:
    contact_id = await new_contact(gateway)
    row_ids = [await pending_open(gateway, contact_id) for _ in range(3)]

    first = await deliver_row(worker_context(gateway), "tracking_hit", row_ids[0])
    states = [(await stored_hit(gateway, row_id)).state for row_id in row_ids]
    later = [await deliver_row(worker_context(gateway), "tracking_hit", row_id) for row_id in row_ids[1:]]
    timeline = await gateway.client.get(f"/v1/contacts/{contact_id}/timeline", headers=gateway.auth)

    assert first == "delivered"
    assert states == ["delivered"] * 3
    assert later == ["delivered", "delivered"]
    assert sorted(event["id"] for event in timeline.json()["items"]) == sorted(row_ids)


async def test_rejected_event_fails_only_its_row(gateway: Gateway) -> None:
    contact_id = await new_contact(gateway)
    unknown_id = f"ct_{uuid.uuid4().hex}"
    good = await pending_open(gateway, contact_id)
    bad = await pending_open(gateway, unknown_id)

    outcome = await deliver_row(worker_context(gateway), "tracking_hit", good)
    rejected = await stored_hit(gateway, bad)

    assert outcome == "delivered"
    assert rejected.state == "failed"
    assert rejected.last_error is not None
    assert "422" in rejected.last_error
    assert "contact_id" in rejected.last_error


async def test_contacts_outage_retries_each_row(gateway: Gateway) -> None:
    contact_id = await new_contact(gateway)
    row_ids = [await pending_open(gateway, contact_id) for _ in range(2)]
    context = worker_context(gateway)
    context["clients"] = {
        "contacts": ServiceClient("contacts", f"http://127.0.0.1:{free_port()}", internal_token=gateway.app.state.settings.internal_token)
    }

    try:
        outcome = await deliver_row(context, "tracking_hit", row_ids[0])
    finally:
        await context["clients"]["contacts"].aclose()
    rows = [await stored_hit(gateway, row_id) for row_id in row_ids]

    assert outcome == "retry"
    assert [row.state for row in rows] == ["pending", "pending"]
    assert [row.attempts for row in rows] == [1, 1]
    assert all(row.last_error for row in rows)
