"""Every fixture through the gateway's HTTP routes: status, stored receipts and delivered events.

The clock is frozen at the fixtures' test clock. A forged variant of each positive fixture must be
rejected with the provider's status and store nothing; the genuine request must then answer 200,
store one receipt per provider event and reach the contact's timeline with the mapped type.
"""

import json
import re
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest

from services.gateway.receipts.timeline import TIMELINE_TYPES, timeline_event_id
from services.gateway.webhooks import EventType
from services.kit import clock
from services.kit.problems import PROBLEM_MEDIA_TYPE

from .conftest import MANIFEST, TEST_CLOCK, fixture_bytes
from .http_support import (
    REJECTION_STATUS,
    WebhookGateway,
    fixtures_clock,
    forged_request,
    sendgrid_request,
    webhook_gateway,
)

__all__ = ["fixtures_clock", "webhook_gateway"]


def _params(section: str) -> list[Any]:
    cases = []
    for provider, settings in MANIFEST["providers"].items():
        for entry in settings[section]:
            label = entry["file"] if provider != "postmark" or section == "fixtures" else entry["description"][:40]
            cases.append(pytest.param(provider, entry, id=re.sub(r"[^\w/.-]+", "_", label)))
    return cases


@pytest.mark.parametrize(("provider", "entry"), _params("fixtures"))
async def test_fixture_forged_then_genuine(webhook_gateway: WebhookGateway, provider: str, entry: dict[str, Any]) -> None:
    expected = entry["expect"]["events"]
    unique_ids = list(dict.fromkeys(event["provider_event_id"] for event in expected))
    confirms = entry["expect"].get("action") == "confirm_subscription"
    forged_headers, forged_body = forged_request(provider, entry)
    before = await webhook_gateway.receipt_count(provider)

    forged = await webhook_gateway.post(provider, forged_headers, forged_body)
    after_forged = await webhook_gateway.receipt_count(provider)
    response = await webhook_gateway.post(provider, entry["request"]["headers"], fixture_bytes(entry["file"]))

    assert forged.status_code == REJECTION_STATUS[provider]
    assert forged.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert forged.json()["code"]
    if provider == "postmark":
        assert forged.headers["www-authenticate"] == 'Basic realm="postmark"'
    assert after_forged == before

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["events"] == len(expected)
    assert answer["stored"] + answer["duplicates"] == len(unique_ids) + (1 if confirms else 0)
    await _assert_receipts(webhook_gateway, provider, expected, unique_ids)
    await _assert_delivered(webhook_gateway, provider, expected)


async def _assert_receipts(
    webhook_gateway: WebhookGateway, provider: str, expected: list[dict[str, Any]], unique_ids: list[str]
) -> None:
    receipts = {row.provider_event_id: row for row in await webhook_gateway.receipts(provider, unique_ids)}
    assert sorted(receipts) == sorted(unique_ids)
    for event in expected:
        row = receipts[event["provider_event_id"]]
        assert row.event_type == event["type"]
        assert row.email == event["email"]
        assert row.occurred_at is not None
        assert row.occurred_at.isoformat().replace("+00:00", "Z").startswith(event["occurred_at"][:19])


async def _assert_delivered(webhook_gateway: WebhookGateway, provider: str, expected: list[dict[str, Any]]) -> None:
    deliverer = webhook_gateway.gateway.deliverer()
    for event in expected:
        row_id = timeline_event_id(provider, event["provider_event_id"])
        assert await deliverer.deliver("webhook_receipt", row_id) == "delivered"
        stored = {item["id"]: item for item in await webhook_gateway.timeline(event["email"])}
        assert row_id in stored
        assert stored[row_id]["properties"]["provider"] == provider
        assert stored[row_id]["properties"]["provider_event_id"] == event["provider_event_id"]
        assert stored[row_id]["type"] in _timeline_types(event["type"])


def _timeline_types(common_type: str) -> set[str]:
    mapped = TIMELINE_TYPES[EventType(common_type)]
    # A bounce whose text reads as an automatic reply or a complaint is filed as one.
    return {mapped, "email_auto_replied", "email_complained"} if mapped == "email_bounced" else {mapped}


@pytest.mark.parametrize(("provider", "entry"), _params("negative"))
async def test_negative_fixture_is_rejected(
    webhook_gateway: WebhookGateway, provider: str, entry: dict[str, Any]
) -> None:
    replay = entry["file"] == "mailgun/negative/replayed_token_other_event.json"
    if replay:
        # The captured token must be known first: it came with delivered.json.
        delivered = MANIFEST["providers"]["mailgun"]["fixtures"][1]
        assert delivered["file"] == "mailgun/delivered.json"
        first = await webhook_gateway.post("mailgun", delivered["request"]["headers"], fixture_bytes(delivered["file"]))
        assert first.status_code == 200
    before = await webhook_gateway.receipt_count(provider)

    response = await webhook_gateway.post(provider, entry["request"]["headers"], fixture_bytes(entry["file"]))

    assert response.status_code == (406 if replay else REJECTION_STATUS[provider]), response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert await webhook_gateway.receipt_count(provider) == before


async def test_retried_request_is_stored_once(webhook_gateway: WebhookGateway) -> None:
    entry = MANIFEST["providers"]["sendgrid"]["fixtures"][-1]
    assert entry["file"] == "sendgrid/batch_mixed_with_duplicate.json"
    unique_ids = {event["provider_event_id"] for event in entry["expect"]["events"]}

    answers = [
        (await webhook_gateway.post("sendgrid", entry["request"]["headers"], fixture_bytes(entry["file"]))).json()
        for _ in range(3)
    ]

    assert all(answer["stored"] + answer["duplicates"] == len(unique_ids) for answer in answers)
    assert answers[1]["stored"] == 0
    assert answers[2]["stored"] == 0
    assert len(await webhook_gateway.receipts("sendgrid", sorted(unique_ids))) == len(unique_ids)


async def test_unknown_event_kind_is_skipped(webhook_gateway: WebhookGateway) -> None:
    event = {"email": "new-kind@example.com", "timestamp": int(TEST_CLOCK.timestamp()), "event": "teleported",
             "sg_event_id": uuid.uuid4().hex, "sg_message_id": "m.1"}
    headers, body = sendgrid_request([event])

    response = await webhook_gateway.post("sendgrid", headers, body)

    assert response.status_code == 200
    assert response.json() == {"events": 0, "stored": 0, "duplicates": 0, "skipped": 1}
    assert await webhook_gateway.receipts("sendgrid", [event["sg_event_id"]]) == []


async def test_future_event_recorded_at_arrival(webhook_gateway: WebhookGateway) -> None:
    email = f"skewed-{uuid.uuid4().hex[:8]}@example.com"
    ahead = TEST_CLOCK + timedelta(days=2)
    event = {"email": email, "timestamp": int(ahead.timestamp()), "event": "bounce", "type": "bounce",
             "status": "5.1.1", "reason": "550 5.1.1 user unknown", "sg_event_id": uuid.uuid4().hex, "sg_message_id": "m.2"}
    headers, body = sendgrid_request([event])

    response = await webhook_gateway.post("sendgrid", headers, body)
    row_id = timeline_event_id("sendgrid", event["sg_event_id"])
    # Only this row: the other tests' receipts that no one delivered stay as they are.
    outcome = await webhook_gateway.gateway.deliverer().deliver("webhook_receipt", row_id, together=False)
    stored = {item["id"]: item for item in await webhook_gateway.timeline(email)}

    assert response.status_code == 200
    assert outcome == "delivered"
    assert stored[row_id]["type"] == "email_bounced"
    assert stored[row_id]["occurred_at"].startswith(TEST_CLOCK.isoformat()[:19])
    assert stored[row_id]["properties"]["provider_occurred_at"].startswith(ahead.isoformat()[:19])


async def test_unconfigured_provider_is_404(webhook_gateway: WebhookGateway) -> None:
    state = webhook_gateway.gateway.app.state
    verifier = state.webhook_verifier
    state.webhook_verifier = replace(verifier, config=verifier.config.model_copy(update={"mailgun": None}))
    entry = MANIFEST["providers"]["mailgun"]["fixtures"][1]

    try:
        response = await webhook_gateway.post("mailgun", entry["request"]["headers"], fixture_bytes(entry["file"]))
    finally:
        state.webhook_verifier = verifier

    assert response.status_code == 404
    assert response.json()["code"] == "provider_not_configured"


async def test_stale_signature_follows_clock(webhook_gateway: WebhookGateway) -> None:
    entry = MANIFEST["providers"]["sendgrid"]["fixtures"][2]
    clock.advance(timedelta(hours=26))

    response = await webhook_gateway.post("sendgrid", entry["request"]["headers"], fixture_bytes(entry["file"]))

    assert response.status_code == 401
    assert response.json()["code"] == "stale_timestamp"


async def test_sns_subscription_is_confirmed_by_worker(webhook_gateway: WebhookGateway) -> None:
    entry = next(e for e in MANIFEST["providers"]["ses"]["fixtures"] if e["file"] == "ses/subscription_confirmation.json")
    subscribe_url = json.loads(fixture_bytes(entry["file"]))["SubscribeURL"]
    visited: list[str] = []

    def sns(request: httpx.Request) -> httpx.Response:
        visited.append(str(request.url))
        return httpx.Response(200, text="<ConfirmSubscriptionResponse/>")

    response = await webhook_gateway.post("ses", entry["request"]["headers"], fixture_bytes(entry["file"]))
    async with httpx.AsyncClient(transport=httpx.MockTransport(sns)) as provider_http:
        deliverer = webhook_gateway.gateway.deliverer(provider_http)
        message_id = json.loads(fixture_bytes(entry["file"]))["MessageId"]
        outcome = await deliverer.deliver("webhook_receipt", timeline_event_id("ses", f"subscription:{message_id}"))

    assert response.status_code == 200
    assert outcome == "delivered"
    assert visited == [subscribe_url]
