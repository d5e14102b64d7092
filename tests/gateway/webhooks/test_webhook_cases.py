"""Provider webhook scenarios end to end at the gateway: batches, ordering, failure classes, machine opens.

Each test signs its own SendGrid batch with the TEST_ONLY key, with ids and addresses unique to the
test, then runs the deliveries to the contacts service and reads the result through the public API.
"""

import hashlib
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from services.cli.supervisor import free_port
from services.gateway.delivery.service import Deliverer
from services.gateway.delivery.tables import DELIVERY_MODELS
from services.gateway.receipts.models import WebhookReceipt
from services.kit import clock
from services.kit.http import ServiceClient

from .conftest import MANIFEST, TEST_CLOCK, fixture_bytes, mailgun_signing_key, sign_mailgun, sign_sns
from .http_support import WebhookGateway, fixtures_clock, sendgrid_request, webhook_gateway

__all__ = ["fixtures_clock", "webhook_gateway"]


def sendgrid_event(email: str, event: str, at: datetime, message: str, **fields: Any) -> dict[str, Any]:
    return {
        "email": email,
        "timestamp": int(at.timestamp()),
        "event": event,
        "sg_event_id": fields.pop("sg_event_id", uuid.uuid4().hex),
        "sg_message_id": f"{message}.filter0001",
        "smtp-id": f"<{message}@nurture.example>",
        **fields,
    }


async def post_and_deliver(webhook_gateway: WebhookGateway, events: list[dict[str, Any]]) -> dict[str, Any]:
    headers, body = sendgrid_request(events)
    response = await webhook_gateway.post("sendgrid", headers, body)
    assert response.status_code == 200, response.text
    outcomes = await webhook_gateway.gateway.deliver_enqueued()
    assert set(outcomes) <= {"delivered"}
    return response.json()  # type: ignore[no-any-return]


def email_of(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}@example.com"


async def test_batch_events_stored_once_each(webhook_gateway: WebhookGateway) -> None:
    email, message = email_of("w"), f"m1-{uuid.uuid4().hex[:8]}"
    at = TEST_CLOCK - timedelta(minutes=30)
    e1, e2, e3, e4 = (uuid.uuid4().hex for _ in range(4))
    batch = [
        sendgrid_event(email, "delivered", at, message, sg_event_id=e1),
        sendgrid_event(email, "open", at + timedelta(minutes=1), message, sg_event_id=e2, useragent="Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/122.0 Safari/537.36", ip="198.51.100.7"),
        sendgrid_event(email, "click", at + timedelta(minutes=2), message, sg_event_id=e3, url="https://example.com/p", useragent="Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/122.0 Safari/537.36", ip="198.51.100.7"),
    ]

    first = await post_and_deliver(webhook_gateway, batch)
    retries = [await post_and_deliver(webhook_gateway, batch) for _ in range(2)]
    after_retries = await webhook_gateway.timeline(email)
    extra_open = sendgrid_event(email, "open", at + timedelta(minutes=5), message, sg_event_id=e4, useragent="Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 (KHTML, like Gecko)")
    last = await post_and_deliver(webhook_gateway, [batch[1], extra_open])
    final = await webhook_gateway.timeline(email)

    assert first["stored"] == 3
    assert [answer["stored"] for answer in retries] == [0, 0]
    assert [answer["duplicates"] for answer in retries] == [3, 3]
    assert sorted(item["type"] for item in after_retries) == ["email_clicked", "email_delivered", "email_opened"]
    assert (last["stored"], last["duplicates"]) == (1, 1)
    assert len(final) == 4
    assert [item["type"] for item in final].count("email_opened") == 2
    assert {item["properties"]["message_id"] for item in final} == {f"<{message}@nurture.example>"}
    assert len(await webhook_gateway.receipts("sendgrid", [e1, e2, e3, e4])) == 4


async def test_out_of_order_events_keep_their_times(webhook_gateway: WebhookGateway) -> None:
    email, message = email_of("m2"), f"m2-{uuid.uuid4().hex[:8]}"
    day = TEST_CLOCK.replace(hour=0, minute=0, second=0) - timedelta(hours=1)
    human = "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/122.0 Safari/537.36"

    await post_and_deliver(webhook_gateway, [sendgrid_event(email, "open", day.replace(hour=10, minute=5), message, useragent=human)])
    await post_and_deliver(webhook_gateway, [sendgrid_event(email, "delivered", day.replace(hour=10), message)])
    processed = await post_and_deliver(webhook_gateway, [sendgrid_event(email, "processed", day.replace(hour=9, minute=59), message)])
    await post_and_deliver(webhook_gateway, [sendgrid_event(email, "bounce", day.replace(hour=9, minute=58), message, type="bounce", status="5.1.1", reason="550 5.1.1 user unknown")])
    timeline = await webhook_gateway.timeline(email)
    contact = await webhook_gateway.contact(email)

    assert processed == {"events": 0, "stored": 0, "duplicates": 0, "skipped": 1}
    assert [item["type"] for item in timeline] == ["email_opened", "email_delivered", "email_bounced"]
    assert [item["occurred_at"][11:16] for item in timeline] == ["10:05", "10:00", "09:58"]
    # The bounce predates a delivery of the same message, so it is stale and changes no consent.
    assert contact["consent"]["status"] == "subscribed"


async def test_failures_get_their_class(webhook_gateway: WebhookGateway) -> None:
    at = TEST_CLOCK - timedelta(minutes=10)
    cases = {
        "user_unknown": ({"event": "bounce", "type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 user unknown"}, "email_bounced", "hard", "bounced"),
        "status_wins": ({"event": "bounce", "type": "blocked", "status": "5.4.4", "reason": "550 5.4.4 invalid domain"}, "email_bounced", "hard", "bounced"),
        "mailbox_full": ({"event": "bounce", "type": "bounce", "status": "4.2.2", "reason": "452 4.2.2 mailbox full"}, "email_bounced", "soft", "subscribed"),
        "blocklisted": ({"event": "bounce", "type": "bounce", "status": "5.7.1", "reason": "550 5.7.1 sending IP listed on Spamhaus blocklist"}, "email_bounced", "block", "subscribed"),
        "auto_reply": ({"event": "bounce", "type": "bounce", "reason": "Out of office: back on Monday"}, "email_auto_replied", "auto_reply", "subscribed"),
        "complaint": ({"event": "spamreport"}, "email_complained", "complaint", "complained"),
    }
    emails = {name: email_of(name) for name in cases}

    events = [
        sendgrid_event(emails[name], fields["event"], at, f"{name}-{uuid.uuid4().hex[:6]}", **{k: v for k, v in fields.items() if k != "event"})
        for name, (fields, _, _, _) in cases.items()
    ]
    await post_and_deliver(webhook_gateway, events)

    for name, (_, timeline_type, failure_class, consent) in cases.items():
        [item] = await webhook_gateway.timeline(emails[name])
        contact = await webhook_gateway.contact(emails[name])
        assert item["type"] == timeline_type, name
        assert item["properties"]["bounce_class"] == failure_class, name
        assert contact["consent"]["status"] == consent, name


async def sending_blocks(webhook_gateway: WebhookGateway) -> float:
    """Return the gateway's `nurture_sending_blocks_total` for SendGrid, read from `/metrics`."""
    response = await webhook_gateway.gateway.client.get("/metrics")
    assert response.status_code == 200
    for line in response.text.splitlines():
        if line.startswith('nurture_sending_blocks_total{provider="sendgrid"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_policy_block_counts_once_for_operators(webhook_gateway: WebhookGateway) -> None:
    at = TEST_CLOCK - timedelta(minutes=10)
    email, message = email_of("blocked"), f"b-{uuid.uuid4().hex[:8]}"
    blocked = sendgrid_event(email, "bounce", at, message, type="bounce", status="5.7.1",
                             reason="550 5.7.1 Service unavailable, client host listed on Spamhaus blocklist")
    unknown_user = sendgrid_event(email_of("hard"), "bounce", at, message, type="bounce", status="5.1.1", reason="550 5.1.1 user unknown")
    before = await sending_blocks(webhook_gateway)

    await post_and_deliver(webhook_gateway, [blocked, unknown_user])
    # The provider retries the same event: it is a duplicate, so it does not count again.
    await post_and_deliver(webhook_gateway, [blocked])
    contact = await webhook_gateway.contact(email)

    assert await sending_blocks(webhook_gateway) == before + 1
    assert contact["consent"]["status"] == "subscribed"


async def invalid_receipts(webhook_gateway: WebhookGateway) -> list[WebhookReceipt]:
    async with webhook_gateway.gateway.app.state.db.session() as session:
        query = select(WebhookReceipt).where(WebhookReceipt.kind == "invalid_event")
        return list((await session.exec(query)).all())


async def test_malformed_event_is_kept_as_failed_receipt(webhook_gateway: WebhookGateway) -> None:
    at = TEST_CLOCK - timedelta(minutes=10)
    good = sendgrid_event(email_of("good"), "delivered", at, f"g-{uuid.uuid4().hex[:6]}")
    bad = {**sendgrid_event(email_of("bad"), "bounce", at, f"b-{uuid.uuid4().hex[:6]}", status="5.1.1"), "timestamp": "garbage"}
    before = {row.id for row in await invalid_receipts(webhook_gateway)}

    first = await post_and_deliver(webhook_gateway, [good, bad])
    # The provider sends the same request again: the malformed event is kept once.
    again = await post_and_deliver(webhook_gateway, [good, bad])
    new_receipts = [row for row in await invalid_receipts(webhook_gateway) if row.id not in before]

    assert (first["events"], first["stored"], first["skipped"]) == (1, 1, 1)
    assert (again["stored"], again["duplicates"]) == (0, 1)
    assert len(new_receipts) == 1
    assert new_receipts[0].state == "failed"
    assert new_receipts[0].raw == bad
    assert new_receipts[0].last_error is not None and new_receipts[0].last_error.startswith("invalid event:")
    assert new_receipts[0].event_type == "bounce"


def invalid_event_id(body: bytes, index: int | None) -> str:
    """Return the `provider_event_id` of the failed receipt kept for the unreadable event at `index`."""
    digest = hashlib.sha256(body).hexdigest()[:32]
    return f"invalid:{digest}:{'-' if index is None else index}"


async def test_unstorable_fields_spare_the_batch(webhook_gateway: WebhookGateway) -> None:
    at = TEST_CLOCK - timedelta(minutes=10)
    email = email_of("spared")
    bounce = sendgrid_event(email, "bounce", at, f"hb-{uuid.uuid4().hex[:6]}", type="bounce", status="5.1.1",
                            reason="550 5.1.1 user unknown")
    # Each value exceeds its receipt column or contains a NUL character, which PostgreSQL text rejects.
    unstorable = [
        sendgrid_event(email_of("id"), "delivered", at, "u1", sg_event_id="e" * 600),
        sendgrid_event("a" * 320 + "@x.example", "delivered", at, "u2"),
        {**sendgrid_event(email_of("message"), "delivered", at, "u3"), "sg_message_id": "m" * 600},
        sendgrid_event("nul\x00" + email_of("nul"), "delivered", at, "u4"),
    ]
    headers, body = sendgrid_request([bounce, *unstorable])

    first = await webhook_gateway.post("sendgrid", headers, body)
    outcomes = await webhook_gateway.gateway.deliver_enqueued()
    # SendGrid sends the same bytes again when it receives no response.
    again = await webhook_gateway.post("sendgrid", headers, body)
    failed = await webhook_gateway.receipts("sendgrid", [invalid_event_id(body, index) for index in range(1, 5)])
    failed.sort(key=lambda row: row.provider_event_id)

    assert first.status_code == 200, first.text
    assert first.json() == {"events": 1, "stored": 1, "duplicates": 0, "skipped": 4}
    assert outcomes == ["delivered"]
    assert (await webhook_gateway.contact(email))["consent"]["status"] == "bounced"
    assert again.status_code == 200, again.text
    assert again.json() == {"events": 1, "stored": 0, "duplicates": 1, "skipped": 4}
    assert [(row.kind, row.state) for row in failed] == [("invalid_event", "failed")] * 4
    assert [row.raw for row in failed] == unstorable
    assert [(row.last_error or "").split(":")[1].strip() for row in failed] == [
        "provider_event_id", "email", "message_id", "email"
    ]


def mailgun_bounce(email: str) -> tuple[dict[str, str], bytes]:
    payload = json.loads(fixture_bytes("mailgun/failed_permanent.json"))
    payload["event-data"] = dict(payload["event-data"], id=uuid.uuid4().hex, recipient=email)
    # A token of its own: the fixture's token is bound to the fixture's event data.
    payload["signature"] = dict(payload["signature"], token=uuid.uuid4().hex + uuid.uuid4().hex[:18])
    return {"Content-Type": "application/json"}, json.dumps(sign_mailgun(payload, mailgun_signing_key())).encode()


def postmark_bounce(email: str) -> tuple[dict[str, str], bytes]:
    [entry] = [entry for entry in MANIFEST["providers"]["postmark"]["fixtures"] if entry["file"] == "postmark/bounce_hard.json"]
    record = dict(json.loads(fixture_bytes(entry["file"])), Email=email)
    return entry["request"]["headers"], json.dumps(record).encode()


def ses_delivery(emails: list[str]) -> tuple[dict[str, str], bytes]:
    envelope = json.loads(fixture_bytes("ses/delivery.json"))
    message = json.loads(envelope["Message"])
    message["mail"]["destination"] = emails
    message["delivery"]["recipients"] = emails
    signed = sign_sns(dict(envelope, MessageId=str(uuid.uuid4()), Message=json.dumps(message)))
    return {"Content-Type": "text/plain; charset=UTF-8"}, json.dumps(signed).encode()


@pytest.mark.parametrize("provider", ["mailgun", "postmark", "ses"])
@pytest.mark.parametrize("unstorable", ["a" * 320 + "@x.example", "nul\x00@example.com"], ids=["long", "nul"])
async def test_unstorable_email_kept_as_failed_receipt(webhook_gateway: WebhookGateway, provider: str, unstorable: str) -> None:
    if provider == "mailgun":
        headers, body = mailgun_bounce(unstorable)
    elif provider == "postmark":
        headers, body = postmark_bounce(unstorable)
    else:
        # One SNS message with a readable recipient first: that recipient's event is stored.
        headers, body = ses_delivery([email_of("readable"), unstorable])

    response = await webhook_gateway.post(provider, headers, body)
    failed = await webhook_gateway.receipts(provider, [invalid_event_id(body, 1 if provider == "ses" else None)])

    assert response.status_code == 200, response.text
    assert response.json()["stored"] == (1 if provider == "ses" else 0)
    assert response.json()["skipped"] == 1
    assert [(row.kind, row.state) for row in failed] == [("invalid_event", "failed")]
    assert "email: " in (failed[0].last_error or "")


async def test_failed_receipt_fits_its_columns(webhook_gateway: WebhookGateway) -> None:
    # An unreadable record whose kind has a NUL character and more than 32 characters. Its body
    # also contains NaN, which Python's json module reads but PostgreSQL's json type rejects.
    headers, body = postmark_bounce("unused@example.com")
    record = json.loads(body)
    del record["Email"]
    record.update(Type="Soft\x00" + "x" * 40, Attempts=float("nan"))
    body = json.dumps(record).encode()

    response = await webhook_gateway.post("postmark", headers, body)
    failed = await webhook_gateway.receipts("postmark", [invalid_event_id(body, None)])

    assert response.status_code == 200, response.text
    assert response.json()["skipped"] == 1
    assert [row.event_type for row in failed] == ["Bounce/Soft" + "x" * 21]
    assert failed[0].raw == {"text": json.dumps(record)}
    assert (failed[0].last_error or "").startswith("invalid event: Email is missing")


async def test_mailgun_forged_bounce_changes_no_consent(webhook_gateway: WebhookGateway) -> None:
    victim = email_of("victim")
    await post_and_deliver(webhook_gateway, [sendgrid_event(victim, "delivered", TEST_CLOCK - timedelta(minutes=5), "v1")])
    accepted = json.loads(fixture_bytes("mailgun/accepted.json"))
    accepted["event-data"] = dict(accepted["event-data"], id=uuid.uuid4().hex)
    accepted["signature"] = dict(accepted["signature"], token=uuid.uuid4().hex + uuid.uuid4().hex[:18])
    signed = sign_mailgun(accepted, mailgun_signing_key())
    # The captured signature block, event id and event time, glued onto a hard bounce of the victim.
    forged_event = dict(signed["event-data"], event="failed", severity="permanent", reason="bounce", recipient=victim)
    forged = dict(signed, **{"event-data": forged_event})
    headers = {"Content-Type": "application/json"}
    before = await webhook_gateway.receipt_count("mailgun")

    first = await webhook_gateway.post("mailgun", headers, json.dumps(signed).encode())
    response = await webhook_gateway.post("mailgun", headers, json.dumps(forged).encode())
    outcomes = await webhook_gateway.gateway.deliver_enqueued()

    assert first.status_code == 200, first.text
    assert response.status_code == 406, response.text
    assert response.json()["code"] == "replayed_token"
    assert outcomes == []
    assert await webhook_gateway.receipt_count("mailgun") == before
    assert (await webhook_gateway.contact(victim))["consent"]["status"] == "subscribed"


async def test_repeated_soft_bounces_suppress(webhook_gateway: WebhookGateway) -> None:
    email = email_of("soft")
    start = TEST_CLOCK - timedelta(days=20)
    bounces = [
        sendgrid_event(email, "bounce", start + timedelta(days=day * 4), f"soft{day}-{uuid.uuid4().hex[:6]}", type="bounce", status="4.2.2", reason="452 4.2.2 mailbox full")
        for day in range(5)
    ]

    await post_and_deliver(webhook_gateway, bounces[:4])
    after_four = (await webhook_gateway.contact(email))["consent"]["status"]
    await post_and_deliver(webhook_gateway, bounces[4:])
    after_five = (await webhook_gateway.contact(email))["consent"]

    assert after_four == "subscribed"
    assert after_five["status"] == "bounced"
    assert after_five["reason"] == "repeated_soft"


async def test_machine_open_is_flagged(webhook_gateway: WebhookGateway) -> None:
    email, message = email_of("mpp"), f"mpp-{uuid.uuid4().hex[:8]}"
    human_agent = "Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/122.0 Safari/537.36"
    machine = sendgrid_event(email, "open", TEST_CLOCK - timedelta(minutes=5), message, sg_machine_open=True, useragent=human_agent)
    person = sendgrid_event(email, "open", TEST_CLOCK - timedelta(minutes=4), message, sg_machine_open=False, useragent=human_agent)

    await post_and_deliver(webhook_gateway, [machine, person])
    opens = {item["properties"]["provider_event_id"]: item["properties"] for item in await webhook_gateway.timeline(email)}

    assert opens[machine["sg_event_id"]]["machine"] is True
    assert opens[machine["sg_event_id"]]["classification_reasons"] == ["provider_machine_open"]
    assert opens[person["sg_event_id"]]["machine"] is False


async def test_contacts_outage_loses_nothing(webhook_gateway: WebhookGateway) -> None:
    gateway = webhook_gateway.gateway
    email = email_of("outage")
    headers, body = sendgrid_request([sendgrid_event(email, "delivered", TEST_CLOCK, f"o-{uuid.uuid4().hex[:6]}")])
    response = await webhook_gateway.post("sendgrid", headers, body)
    [(table, row_id)] = gateway.queue.enqueued
    gateway.queue.enqueued.clear()
    settings = gateway.app.state.settings
    down = ServiceClient("contacts", f"http://127.0.0.1:{free_port()}", internal_token=settings.internal_token)

    offline = Deliverer(gateway.app.state.db, DELIVERY_MODELS, contacts=down, provider_http=None, max_backoff_s=300)
    first = await offline.deliver(table, row_id)
    await down.aclose()
    pending = await webhook_gateway.receipt(row_id)
    clock.advance(timedelta(seconds=3))
    swept = await gateway.deliverer().sweep()
    delivered = await webhook_gateway.receipt(row_id)

    assert response.status_code == 200
    assert first == "retry"
    assert (pending.state, pending.attempts) == ("pending", 1)
    assert "contacts" in (pending.last_error or "")
    assert pending.next_attempt_at == TEST_CLOCK + timedelta(seconds=2)
    assert swept >= 1
    assert (delivered.state, delivered.attempts) == ("delivered", 2)
    assert [item["type"] for item in await webhook_gateway.timeline(email)] == ["email_delivered"]


async def test_rejected_delivery_is_dead_lettered(webhook_gateway: WebhookGateway) -> None:
    gateway = webhook_gateway.gateway
    # An address the contacts service rejects: the receipt stays, marked failed, and is not retried.
    headers, body = sendgrid_request([sendgrid_event("not an address", "delivered", TEST_CLOCK, "bad")])
    response = await webhook_gateway.post("sendgrid", headers, body)

    outcomes = await gateway.deliver_enqueued()

    assert response.status_code == 200
    assert outcomes == ["failed"]
