"""Consent: who may change it, bounce and complaint suppression, and ordering by occurred_at."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.kit.contracts import contacts as topics
from tests.contacts.support import Apps, create_contact, published

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


async def _event(client: httpx.AsyncClient, contact_id: str, type_: str, at: datetime, **properties: Any) -> None:
    body = {"id": uuid.uuid4().hex, "contact_id": contact_id, "type": type_, "occurred_at": at.isoformat(), "properties": properties}
    response = await client.post("/events", json=body)
    assert response.status_code == 202, response.text


async def _sendability(client: httpx.AsyncClient, contact_id: str, **params: str) -> dict[str, Any]:
    response = await client.get(f"/contacts/{contact_id}/sendability", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def _consent(client: httpx.AsyncClient, contact_id: str) -> dict[str, Any]:
    return (await client.get(f"/contacts/{contact_id}/consent")).json()  # type: ignore[no-any-return]


async def test_new_contact_is_sendable(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client, timezone="Europe/Paris")

    verdict = await _sendability(client, contact["id"])

    assert verdict["sendable"] is True
    assert verdict["reason"] is None
    assert (verdict["email"], verdict["timezone"]) == (contact["email"], "Europe/Paris")


async def test_api_unsubscribe_is_recorded_and_published(contacts_app: Apps) -> None:
    app, client = contacts_app
    contact = await create_contact(client)

    response = await client.put(f"/contacts/{contact['id']}/consent", json={"status": "unsubscribed"})

    assert response.status_code == 200
    assert response.json()["consent"]["status"] == "unsubscribed"
    [change] = response.json()["history"]
    assert (change["from_status"], change["to_status"], change["source"]) == ("subscribed", "unsubscribed", "api")
    [event] = await published(app, topics.CONSENT_CHANGED, contact_id=contact["id"])
    assert (event["status"], event["source"], event["topic"]) == ("unsubscribed", "api", None)
    snapshot = (await published(app, topics.CONTACT_CHANGED, contact__id=contact["id"]))[-1]
    assert snapshot["contact"]["consent"]["status"] == "unsubscribed"
    assert (await _sendability(client, contact["id"]))["reason"] == "unsubscribed"


async def test_resubscribe_needs_the_persons_consent(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)
    await client.put(f"/contacts/{contact['id']}/consent", json={"status": "unsubscribed"})

    without = await client.put(f"/contacts/{contact['id']}/consent", json={"status": "subscribed"})
    with_evidence = await client.put(
        f"/contacts/{contact['id']}/consent",
        json={"status": "subscribed", "evidence": "confirmed by double opt-in on 2024-06-01"},
    )

    assert without.status_code == 422
    assert without.json()["errors"][0]["field"] == "evidence"
    assert with_evidence.status_code == 200
    assert with_evidence.json()["consent"]["status"] == "subscribed"
    assert with_evidence.json()["history"][-1]["evidence"] == "confirmed by double opt-in on 2024-06-01"


async def test_unsubscribe_page_resubscribes_without_evidence(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)
    await _event(client, contact["id"], "unsubscribed", T0)

    response = await client.put(
        f"/contacts/{contact['id']}/consent", params={"source": "unsubscribe_page"}, json={"status": "subscribed"}
    )

    assert response.status_code == 200
    assert response.json()["history"][-1]["source"] == "unsubscribe_page"
    assert (await _sendability(client, contact["id"]))["sendable"] is True


async def test_unknown_source_is_422(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)

    response = await client.put(f"/contacts/{contact['id']}/consent", params={"source": "import"}, json={"status": "subscribed"})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "source"


async def test_topic_unsubscribe_blocks_only_that_topic(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)

    await _event(client, contact["id"], "unsubscribed", T0, topic="newsletter")

    assert (await _sendability(client, contact["id"], topic="newsletter"))["reason"] == "topic_unsubscribed"
    assert (await _sendability(client, contact["id"], topic="product"))["sendable"] is True
    assert (await _sendability(client, contact["id"]))["sendable"] is True


async def test_hard_bounce_suppresses_all_sending(contacts_app: Apps) -> None:
    app, client = contacts_app
    contact = await create_contact(client)

    await _event(client, contact["id"], "email_bounced", T0, bounce_class="hard", message_id="m1")

    verdict = await _sendability(client, contact["id"], topic="newsletter")
    assert (verdict["sendable"], verdict["status"], verdict["reason"]) == (False, "bounced", "hard_bounce")
    [event] = await published(app, topics.CONSENT_CHANGED, contact_id=contact["id"])
    assert (event["status"], event["source"]) == ("bounced", "hard_bounce")


async def test_api_cannot_resubscribe_bounced_without_evidence(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)
    await _event(client, contact["id"], "email_bounced", T0, bounce_class="hard")

    response = await client.put(f"/contacts/{contact['id']}/consent", json={"status": "subscribed"})

    assert response.status_code == 422
    assert (await _sendability(client, contact["id"]))["status"] == "bounced"


async def test_unsubscribe_does_not_weaken_bounce(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)
    await _event(client, contact["id"], "email_bounced", T0, bounce_class="hard")

    await client.put(f"/contacts/{contact['id']}/consent", json={"status": "unsubscribed"})
    await _event(client, contact["id"], "unsubscribed", T0 + timedelta(hours=1))

    assert (await _sendability(client, contact["id"]))["reason"] == "hard_bounce"


async def test_complaint_suppresses_without_counting_bounces(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)

    await _event(client, contact["id"], "email_complained", T0, message_id="m7")

    verdict = await _sendability(client, contact["id"])
    assert (verdict["sendable"], verdict["status"], verdict["reason"]) == (False, "complained", "complaint")
    history = (await _consent(client, contact["id"]))["history"]
    assert [(change["to_status"], change["source"]) for change in history] == [("complained", "complaint")]


async def test_block_bounce_does_not_suppress(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)

    await _event(client, contact["id"], "email_bounced", T0, bounce_class="block", smtp_status="5.7.1")

    assert (await _sendability(client, contact["id"]))["sendable"] is True


async def test_auto_reply_changes_nothing(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)

    await _event(client, contact["id"], "email_auto_reply", T0, subject="Out of office")

    assert (await _sendability(client, contact["id"]))["sendable"] is True
    assert (await _consent(client, contact["id"]))["history"] == []


async def test_bounce_needs_a_bounce_class(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)

    response = await client.post("/events", json={"contact_id": contact["id"], "type": "email_bounced", "properties": {}})

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "properties.bounce_class"


async def test_one_soft_bounce_does_not_suppress(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)

    await _event(client, contact["id"], "email_bounced", T0, bounce_class="soft", smtp_status="4.2.2")

    assert (await _sendability(client, contact["id"]))["sendable"] is True


async def test_fifth_soft_bounce_in_30_days_suppresses(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)

    for day in range(4):
        await _event(client, contact["id"], "email_bounced", T0 + timedelta(days=7 * day), bounce_class="soft")
    after_four = await _sendability(client, contact["id"])
    await _event(client, contact["id"], "email_bounced", T0 + timedelta(days=29), bounce_class="soft")

    assert after_four["sendable"] is True
    verdict = await _sendability(client, contact["id"])
    assert (verdict["sendable"], verdict["reason"]) == (False, "repeated_soft")
    change = (await _consent(client, contact["id"]))["history"][-1]
    assert (change["source"], change["occurred_at"]) == ("soft_bounce", "2024-05-30T10:00:00Z")


async def test_soft_bounces_beyond_30_days_ignored(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)

    for day in (0, 10, 20, 31, 45):
        await _event(client, contact["id"], "email_bounced", T0 + timedelta(days=day), bounce_class="soft")

    assert (await _sendability(client, contact["id"]))["sendable"] is True


async def test_soft_bounces_arriving_out_of_order_still_suppress(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)

    for day in (20, 15, 10, 5, 0):
        await _event(client, contact["id"], "email_bounced", T0 + timedelta(days=day), bounce_class="soft")

    assert (await _sendability(client, contact["id"]))["reason"] == "repeated_soft"


async def test_stale_bounce_of_opened_message_does_not_suppress(contacts_app: Apps) -> None:
    """The message m2 was opened at 10:05 and delivered at 10:00; a bounce at 09:58 arriving last is stale."""
    _, client = contacts_app
    contact = await create_contact(client)
    day = datetime(2024, 6, 3, tzinfo=UTC)

    await _event(client, contact["id"], "email_opened", day.replace(hour=10, minute=5), message_id="m2")
    await _event(client, contact["id"], "email_delivered", day.replace(hour=10), message_id="m2")
    await _event(client, contact["id"], "email_processed", day.replace(hour=9, minute=59), message_id="m2")
    await _event(client, contact["id"], "email_bounced", day.replace(hour=9, minute=58), message_id="m2", bounce_class="hard")

    timeline = (await client.get(f"/contacts/{contact['id']}/timeline")).json()["items"]
    assert "email_bounced" in [event["type"] for event in timeline]
    assert (await _sendability(client, contact["id"]))["sendable"] is True

    await _event(client, contact["id"], "email_bounced", day.replace(hour=11), message_id="m3", bounce_class="hard")

    assert (await _sendability(client, contact["id"]))["reason"] == "hard_bounce"


async def test_change_older_than_current_state_is_ignored(contacts_app: Apps) -> None:
    """A re-subscription at 12:00 wins over an unsubscribe from 11:00 that arrives late."""
    _, client = contacts_app
    contact = await create_contact(client)
    await _event(client, contact["id"], "unsubscribed", T0)
    await client.put(
        f"/contacts/{contact['id']}/consent", params={"source": "unsubscribe_page"}, json={"status": "subscribed"}
    )

    await _event(client, contact["id"], "unsubscribed", T0 + timedelta(hours=1))
    await _event(client, contact["id"], "email_bounced", T0 + timedelta(hours=1), bounce_class="hard")

    assert (await _sendability(client, contact["id"]))["sendable"] is True
    assert [change["to_status"] for change in (await _consent(client, contact["id"]))["history"]] == ["unsubscribed", "subscribed"]


@pytest.mark.parametrize("source", ["unsubscribe_link", "provider"])
async def test_unsubscribe_event_records_its_source(contacts_app: Apps, source: str) -> None:
    _, client = contacts_app
    contact = await create_contact(client)

    await _event(client, contact["id"], "unsubscribed", T0, source=source)

    consent = await _consent(client, contact["id"])
    assert consent["consent"]["source"] == source
    assert consent["consent"]["changed_at"] == "2024-05-01T10:00:00Z"


async def test_batch_applies_consent_in_occurred_order(contacts_app: Apps) -> None:
    _, client = contacts_app
    contact = await create_contact(client)
    events = [
        {"contact_id": contact["id"], "type": "email_opened", "occurred_at": "2024-06-03T10:05:00Z", "properties": {"message_id": "b1"}},
        {"contact_id": contact["id"], "type": "email_bounced", "occurred_at": "2024-06-03T09:58:00Z", "properties": {"message_id": "b1", "bounce_class": "hard"}},
    ]

    response = await client.post("/events/batch", json={"events": list(reversed(events))})

    assert [item["status"] for item in response.json()["items"]] == ["stored", "stored"]
    assert (await _sendability(client, contact["id"]))["sendable"] is True


async def test_sendability_of_many_contacts_in_one_call(contacts_app: Apps) -> None:
    _, client = contacts_app
    subscribed = await create_contact(client)
    unsubscribed = await create_contact(client)
    topic_opted_out = await create_contact(client)
    await client.put(f"/contacts/{unsubscribed['id']}/consent", json={"status": "unsubscribed"})
    await client.put(f"/contacts/{topic_opted_out['id']}/consent", json={"status": "unsubscribed", "topic": "newsletter"})
    unknown = uuid.uuid4().hex

    ids = [subscribed["id"], unsubscribed["id"], topic_opted_out["id"], unknown]
    response = await client.post("/contacts/sendability", json={"contact_ids": ids, "topic": "newsletter"})

    assert response.status_code == 200, response.text
    body = response.json()
    verdicts = {verdict["contact_id"]: (verdict["sendable"], verdict["reason"]) for verdict in body["contacts"]}
    assert verdicts == {
        subscribed["id"]: (True, None),
        unsubscribed["id"]: (False, "unsubscribed"),
        topic_opted_out["id"]: (False, "topic_unsubscribed"),
    }
    assert body["missing"] == [unknown]
    # Each verdict equals the single-contact route's verdict.
    for contact_id in verdicts:
        single = await _sendability(client, contact_id, topic="newsletter")
        assert next(verdict for verdict in body["contacts"] if verdict["contact_id"] == contact_id) == single


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"contact_ids": []}, "contact_ids"),
        ({"contact_ids": [f"c{number}" for number in range(501)]}, "contact_ids"),
        ({"contact_ids": ["a"], "topic": "x" * 64}, "topic"),
        ({"contact_ids": ["a"], "extra": 1}, "extra"),
    ],
)
async def test_sendability_of_many_rejects_bad_queries(contacts_app: Apps, body: dict[str, Any], field: str) -> None:
    _, client = contacts_app

    response = await client.post("/contacts/sendability", json=body)

    assert response.status_code == 422, response.text
    assert field in {error["field"].split(".")[0].split("[")[0] for error in response.json()["errors"]}
