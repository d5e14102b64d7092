"""Delivery jobs that take rows together: leases the sweep respects, outages, and the unsubscribe page's own row."""

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

from sqlmodel import select

from services.cli.supervisor import free_port
from services.gateway.delivery.service import Deliverer
from services.gateway.delivery.tables import DELIVERY_MODELS
from services.gateway.tracking.models import TrackingHit
from services.kit import clock
from services.kit.http import ServiceClient
from services.kit.tokens import TokenSigner

from .conftest import Gateway
from .test_worker import new_contact, open_link, stored_hit


class RecordingContacts:
    """A wrapper of the contacts client that counts how often each event id is sent.

    `on_request` runs before the request is forwarded, so a test can pause one deliverer there.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent: Counter[str] = Counter()
        self.on_request: Any = None

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        body = kwargs.get("json") or {}
        events = body["events"] if path == "/events/batch" else [body]
        self.sent.update(event["id"] for event in events)
        if self.on_request is not None:
            await self.on_request(path)
        return await self.inner.request(method, path, **kwargs)


def deliverer(gateway: Gateway, contacts: RecordingContacts) -> Deliverer:
    return Deliverer(gateway.app.state.db, DELIVERY_MODELS, contacts=contacts, provider_http=None, max_backoff_s=300)


async def test_sweep_skips_row_leased_by_job(gateway: Gateway) -> None:
    contact_id = await new_contact(gateway)
    first, second = [(await open_link(gateway, contact_id))[1] for _ in range(2)]
    # Both rows are past the sweep's grace, as when their jobs waited in a long queue.
    clock.advance(timedelta(seconds=11))

    job_contacts = RecordingContacts(gateway.app.state.clients["contacts"])
    sweep_contacts = RecordingContacts(gateway.app.state.clients["contacts"])
    job_sending = asyncio.Event()
    release_job = asyncio.Event()

    async def hold_job(path: str) -> None:
        job_sending.set()
        await release_job.wait()

    job_contacts.on_request = hold_job
    job: asyncio.Future[str] | None = None

    async def start_job_during_sweep(path: str) -> None:
        # While the sweep sends the first row, a job claims the second with its batch and is sending it.
        nonlocal job
        if job is None:
            job = asyncio.ensure_future(deliverer(gateway, job_contacts).deliver("tracking_hit", second))
            await asyncio.wait_for(job_sending.wait(), 10)

    sweep_contacts.on_request = start_job_during_sweep
    sweep = asyncio.ensure_future(deliverer(gateway, sweep_contacts).sweep())
    for _ in range(500):
        if sweep_contacts.sent[second] or sweep.done():
            break
        await asyncio.sleep(0.01)
    release_job.set()
    await sweep
    assert job is not None
    job_outcome = await job

    assert job_outcome == "delivered"
    assert job_contacts.sent[second] == 1
    assert job_contacts.sent[first] + sweep_contacts.sent[first] == 1
    assert sweep_contacts.sent[second] == 0


async def deliver_while_contacts_down(gateway: Gateway, row_id: str) -> tuple[str, RecordingContacts]:
    """Run a delivery job for `row_id` against a contacts address where nothing listens."""
    settings = gateway.app.state.settings
    unreachable = ServiceClient("contacts", f"http://127.0.0.1:{free_port()}", internal_token=settings.internal_token)
    contacts = RecordingContacts(unreachable)
    try:
        outcome = await deliverer(gateway, contacts).deliver("tracking_hit", row_id)
    finally:
        await unreachable.aclose()
    return outcome, contacts


async def test_outage_retries_rows_without_more_requests(gateway: Gateway) -> None:
    contact_id = await new_contact(gateway)
    row_ids = [(await open_link(gateway, contact_id))[1] for _ in range(3)]
    outcome, contacts = await deliver_while_contacts_down(gateway, row_ids[0])
    rows = [await stored_hit(gateway, row_id) for row_id in row_ids]

    assert outcome == "retry"
    assert [contacts.sent[row_id] for row_id in row_ids] == [1, 1, 1]
    assert [row.attempts for row in rows] == [1, 1, 1]
    assert all(row.state == "pending" for row in rows)


async def test_unsubscribe_page_delivers_only_its_row(gateway: Gateway) -> None:
    contact_id = await new_contact(gateway)
    _, waiting = await open_link(gateway, contact_id)
    signer: TokenSigner = gateway.app.state.token_signer
    token = signer.sign_unsubscribe("<u@nurture.example>", contact_id)

    response = await gateway.client.post(f"/u/{token}", content="List-Unsubscribe=One-Click")
    gateway.queue.enqueued.clear()
    async with gateway.app.state.db.session() as session:
        hits = (await session.exec(select(TrackingHit).where(TrackingHit.contact_id == contact_id))).all()
    by_kind = {hit.kind: hit for hit in hits}

    assert response.status_code == 200
    assert by_kind["unsubscribe"].state == "delivered"
    assert by_kind["open"].id == waiting
    assert by_kind["open"].state == "pending"
    assert by_kind["open"].attempts == 0


async def test_outage_stops_rows_run_alone(gateway: Gateway) -> None:
    contact_id = await new_contact(gateway)
    row_ids = [(await open_link(gateway, contact_id))[1] for _ in range(3)]
    # Query parameters keep a row out of the batch request, so each of these runs alone.
    async with gateway.app.state.db.session() as session:
        for row_id in row_ids:
            row = await session.get(TrackingHit, row_id)
            assert row is not None
            row.steps = [{**row.steps[0], "params": {"source": "test"}}]
            session.add(row)
        await session.commit()
    outcome, contacts = await deliver_while_contacts_down(gateway, row_ids[0])
    rows = [await stored_hit(gateway, row_id) for row_id in row_ids]

    assert outcome == "retry"
    # Other tests' new rows may join the delivery, and they are not attempted either.
    assert sum(contacts.sent.values()) == 1
    assert sum(contacts.sent[row_id] for row_id in row_ids) == 1
    assert [row.attempts for row in rows] == [1, 1, 1]
    assert all(row.state == "pending" for row in rows)
    assert all(row.last_error for row in rows)
