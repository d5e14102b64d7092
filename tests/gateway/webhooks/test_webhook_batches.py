"""SendGrid batches and event content: every element mapped, stable ids, provider timestamps.

These requests are signed in the test with a key of our own that the configuration trusts, so
the bodies can state exactly the situation under test.
"""

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.gateway.webhooks import (
    CertificateFetcher,
    EventType,
    RedisReplayCache,
    SendGridSettings,
    SkipReason,
    WebhookConfig,
    WebhookResult,
    verify_and_map,
)

from .conftest import MANIFEST, TEST_CLOCK, fixture_bytes, sendgrid_key_text

SIGNING_KEY = ec.generate_private_key(ec.SECP256R1())
SIGNING_KEY_PEM = (
    SIGNING_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
SIGNED_AT = int(TEST_CLOCK.timestamp()) - 60


@pytest.fixture
def rotated_config(config: WebhookConfig) -> WebhookConfig:
    # Two keys at once, as during a key rotation: the fixture key and ours.
    settings = SendGridSettings(verification_keys=(sendgrid_key_text(), SIGNING_KEY_PEM))
    return config.model_copy(update={"sendgrid": settings})


def _sign(body: bytes) -> dict[str, str]:
    timestamp = str(SIGNED_AT)
    signature = SIGNING_KEY.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


def _batch_body(events: list[Any]) -> bytes:
    return json.dumps(events, separators=(",", ":")).encode() + b"\r\n"


async def _post(
    body: bytes,
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> WebhookResult:
    return await verify_and_map(
        "sendgrid",
        method="POST",
        headers=_sign(body),
        body=body,
        config=config,
        replay_cache=replay_cache,
        cert_fetcher=cert_fetcher,
        now=TEST_CLOCK,
    )


def _event(event_id: str, kind: str, at: str, **extra: Any) -> dict[str, Any]:
    return {
        "sg_event_id": event_id,
        "event": kind,
        "sg_message_id": "m1",
        "email": "w@example.com",
        "timestamp": int(datetime.fromisoformat(at).timestamp()),
        **extra,
    }


async def test_batch_maps_every_element(
    rotated_config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    body = _batch_body(
        [
            _event("e1", "delivered", "2025-03-14T09:00:00+00:00"),
            _event("e2", "open", "2025-03-14T09:05:00+00:00"),
            _event("e3", "click", "2025-03-14T09:06:00+00:00", url="https://example.com/p"),
        ]
    )

    result = await _post(body, rotated_config, replay_cache, cert_fetcher)

    assert [event.provider_event_id for event in result.events] == ["e1", "e2", "e3"]
    assert [event.type for event in result.events] == [
        EventType.DELIVERED,
        EventType.OPENED,
        EventType.CLICKED,
    ]
    assert {event.message_id for event in result.events} == {"m1"}
    assert [event.url for event in result.events] == [None, None, "https://example.com/p"]
    assert result.skipped == []


async def test_reposted_batches_keep_event_ids(
    rotated_config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    first = _batch_body(
        [
            _event("e1", "delivered", "2025-03-14T09:00:00+00:00"),
            _event("e2", "open", "2025-03-14T09:05:00+00:00"),
            _event("e3", "click", "2025-03-14T09:06:00+00:00", url="https://example.com/p"),
        ]
    )
    second = _batch_body(
        [
            _event("e2", "open", "2025-03-14T09:05:00+00:00"),
            _event("e4", "open", "2025-03-14T09:30:00+00:00"),
        ]
    )
    args = (rotated_config, replay_cache, cert_fetcher)

    stored: dict[str, EventType] = {}
    for body in (first, first, first, second):
        for event in (await _post(body, *args)).events:
            stored[event.provider_event_id] = event.type

    # The key is the provider's event id, never the message id: two opens of m1 stay two events.
    assert sorted(stored) == ["e1", "e2", "e3", "e4"]
    assert [key for key, kind in stored.items() if kind is EventType.OPENED] == ["e2", "e4"]


async def test_out_of_order_events_keep_provider_times(
    rotated_config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    arrivals = [
        _event("o1", "open", "2025-03-13T10:05:00+00:00"),
        _event("d1", "delivered", "2025-03-13T10:00:00+00:00"),
        _event("p1", "processed", "2025-03-13T09:59:00+00:00"),
    ]

    results = [
        await _post(_batch_body([event]), rotated_config, replay_cache, cert_fetcher)
        for event in arrivals
    ]

    opened, delivered, processed = results
    assert opened.events[0].occurred_at == datetime(2025, 3, 13, 10, 5, tzinfo=UTC)
    assert delivered.events[0].occurred_at == datetime(2025, 3, 13, 10, 0, tzinfo=UTC)
    assert processed.events == []
    assert [(s.kind, s.reason) for s in processed.skipped] == [("processed", SkipReason.IGNORED)]


async def test_unknown_and_invalid_elements_skipped(
    rotated_config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    missing_email = _event("e6", "open", "2025-03-14T09:00:00+00:00")
    del missing_email["email"]
    body = _batch_body(
        [
            _event("e1", "delivered", "2025-03-14T09:00:00+00:00"),
            _event("e2", "brand_new_kind", "2025-03-14T09:00:00+00:00"),
            _event("e3", "processed", "2025-03-14T09:00:00+00:00"),
            "not an event",
            missing_email,
            dict(_event("e7", "bounce", "2025-03-14T09:00:00+00:00"), timestamp="soon"),
        ]
    )

    result = await _post(body, rotated_config, replay_cache, cert_fetcher)

    assert [event.provider_event_id for event in result.events] == ["e1"]
    assert [(s.index, s.kind, s.reason) for s in result.skipped] == [
        (1, "brand_new_kind", SkipReason.UNKNOWN),
        (2, "processed", SkipReason.IGNORED),
        (3, None, SkipReason.INVALID),
        (4, "open", SkipReason.INVALID),
        (5, "bounce", SkipReason.INVALID),
    ]
    assert "email" in result.skipped[3].detail
    assert "timestamp" in result.skipped[4].detail


async def test_event_without_id_gets_content_hash(
    rotated_config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    event = _event("unused", "dropped", "2025-03-14T09:00:00+00:00", reason="Bounced Address")
    del event["sg_event_id"]
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    result = await _post(_batch_body([event]), rotated_config, replay_cache, cert_fetcher)

    expected = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    assert [e.provider_event_id for e in result.events] == [expected]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"not json\r\n", "not JSON"),
        (b'{"event": "delivered"}\r\n', "not a JSON array"),
    ],
)
async def test_unusable_signed_body_reported(
    body: bytes,
    detail: str,
    rotated_config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    result = await _post(body, rotated_config, replay_cache, cert_fetcher)

    assert result.events == []
    assert [(s.index, s.reason) for s in result.skipped] == [(None, SkipReason.INVALID)]
    assert detail in result.skipped[0].detail


@pytest.mark.parametrize(("flag", "expected"), [(True, True), (False, False), ("true", None)])
async def test_machine_open_flag(
    flag: object,
    expected: bool | None,
    rotated_config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    event = _event("e1", "open", "2025-03-14T09:00:00+00:00", sg_machine_open=flag)

    result = await _post(_batch_body([event]), rotated_config, replay_cache, cert_fetcher)

    assert result.events[0].machine_open is expected


def _entry(name: str) -> dict[str, Any]:
    entries = MANIFEST["providers"][name.split("/")[0]]["fixtures"]
    return next(entry for entry in entries if entry["file"] == name)


@pytest.mark.parametrize(
    ("name", "send_id", "contact_id"),
    [
        ("sendgrid/delivered.json", "snd_00000000000000000001", "ctc_0000000001"),
        ("mailgun/delivered.json", "snd_00000000000000000002", "ctc_0000000002"),
        ("postmark/delivery.json", "snd_00000000000000000003", "ctc_0000000003"),
        ("ses/open.json", "snd_00000000000000000004", "ctc_0000000004"),
        ("ses/delivery.json", None, None),
    ],
)
async def test_echoed_send_and_contact_ids(
    name: str,
    send_id: str | None,
    contact_id: str | None,
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    entry = _entry(name)

    result = await verify_and_map(
        name.split("/")[0],
        method="POST",
        headers=entry["request"]["headers"],
        body=fixture_bytes(name),
        config=config,
        replay_cache=replay_cache,
        cert_fetcher=cert_fetcher,
        now=TEST_CLOCK,
    )

    assert result.events[0].send_id == send_id
    assert result.events[0].contact_id == contact_id


# Values the receipt table cannot store: longer than its columns, or text PostgreSQL rejects.
UNSTORABLE_FIELDS = [
    pytest.param({"sg_event_id": "e" * 600}, "provider_event_id", id="long-event-id"),
    pytest.param({"email": "a" * 320 + "@x.example"}, "email", id="long-email"),
    pytest.param({"sg_message_id": "m" * 600}, "message_id", id="long-message-id"),
    pytest.param({"email": "nul\x00@example.com"}, "email", id="nul-in-email"),
    pytest.param({"email": "\ud800@example.com"}, "email", id="lone-surrogate-in-email"),
    pytest.param({"reason": "550 5.1.1 user\x00unknown"}, "diagnostic", id="nul-in-reason"),
    pytest.param({"attempt": float("nan")}, "raw", id="nan-number"),
]


@pytest.mark.parametrize(("fields", "field"), UNSTORABLE_FIELDS)
async def test_unstorable_field_invalidates_one_event(
    fields: dict[str, Any],
    field: str,
    rotated_config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    bounce = _event("hb1", "bounce", "2025-03-14T09:00:00+00:00", type="bounce", status="5.1.1")
    unstorable = dict(_event("bad", "bounce", "2025-03-14T09:00:00+00:00", status="5.1.1"), **fields)

    result = await _post(_batch_body([bounce, unstorable]), rotated_config, replay_cache, cert_fetcher)

    assert [event.provider_event_id for event in result.events] == ["hb1"]
    assert [event.type for event in result.events] == [EventType.BOUNCED_HARD]
    assert [(s.index, s.kind, s.reason) for s in result.skipped] == [
        (1, "bounce", SkipReason.INVALID)
    ]
    assert result.skipped[0].detail.startswith(f"{field}:")


async def test_longest_storable_fields_accepted(
    rotated_config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    email = "a" * 310 + "@x.example"
    event = _event("e" * 512, "delivered", "2025-03-14T09:00:00+00:00", email=f" {email} ")
    event["sg_message_id"] = "m" * 512

    result = await _post(_batch_body([event]), rotated_config, replay_cache, cert_fetcher)

    assert result.skipped == []
    assert len(result.events[0].provider_event_id) == 512
    assert len(result.events[0].email) == 320
    assert len(result.events[0].message_id or "") == 512
