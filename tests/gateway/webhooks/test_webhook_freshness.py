"""Freshness windows, unreadable timestamps and Mailgun token replay."""

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from services.gateway.webhooks import (
    CertificateFetcher,
    MailgunSettings,
    RedisReplayCache,
    RejectionCode,
    SkipReason,
    WebhookConfig,
    WebhookRejected,
    WebhookResult,
    WebhookUnavailable,
    verify_and_map,
)
from services.gateway.webhooks.timestamps import datetime_from_epoch, parse_iso_datetime

from .conftest import (
    MANIFEST,
    TEST_CLOCK,
    CertificateHost,
    fixture_bytes,
    mailgun_signing_key,
    sign_mailgun,
    sign_sns,
)

SENDGRID_DROPPED = next(
    entry
    for entry in MANIFEST["providers"]["sendgrid"]["fixtures"]
    if entry["file"] == "sendgrid/dropped.json"
)
POSTMARK_HARD_BOUNCE = next(
    entry
    for entry in MANIFEST["providers"]["postmark"]["fixtures"]
    if entry["file"] == "postmark/bounce_hard.json"
)
# Valid ISO 8601 times whose UTC conversion falls outside datetime's years 1 to 9999.
OUTSIDE_CALENDAR = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]


async def _send(
    provider: str,
    body: bytes,
    headers: dict[str, str],
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
    now: datetime = TEST_CLOCK,
) -> WebhookResult:
    return await verify_and_map(
        provider,
        method="POST",
        headers=headers,
        body=body,
        config=config,
        replay_cache=replay_cache,
        cert_fetcher=cert_fetcher,
        now=now,
    )


def _signed_at(provider: str) -> tuple[bytes, dict[str, str], datetime]:
    if provider == "sendgrid":
        headers = SENDGRID_DROPPED["request"]["headers"]
        signed_at = datetime_from_epoch(headers["X-Twilio-Email-Event-Webhook-Timestamp"])
        return fixture_bytes(SENDGRID_DROPPED["file"]), headers, signed_at
    if provider == "mailgun":
        body = fixture_bytes("mailgun/delivered.json")
        signed_at = datetime_from_epoch(json.loads(body)["signature"]["timestamp"])
        return body, {}, signed_at
    body = fixture_bytes("ses/delivery.json")
    return body, {}, parse_iso_datetime(json.loads(body)["Timestamp"])


# provider, max age, max time ahead of the clock
WINDOWS = [
    ("sendgrid", timedelta(hours=25), timedelta(minutes=5)),
    ("mailgun", timedelta(hours=12), timedelta(minutes=5)),
    ("ses", timedelta(hours=24), timedelta(minutes=5)),
]


@pytest.mark.parametrize(("provider", "max_age", "max_ahead"), WINDOWS)
async def test_window_edges_accepted(
    provider: str,
    max_age: timedelta,
    max_ahead: timedelta,
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    body, headers, signed_at = _signed_at(provider)
    args = (config, replay_cache, cert_fetcher)

    oldest = await _send(provider, body, headers, *args, now=signed_at + max_age)
    newest = await _send(provider, body, headers, *args, now=signed_at - max_ahead)

    assert len(oldest.events) == 1
    assert len(newest.events) == 1


@pytest.mark.parametrize(("provider", "max_age", "max_ahead"), WINDOWS)
async def test_outside_window_rejected(
    provider: str,
    max_age: timedelta,
    max_ahead: timedelta,
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    body, headers, signed_at = _signed_at(provider)
    second = timedelta(seconds=1)
    args = (config, replay_cache, cert_fetcher)

    with pytest.raises(WebhookRejected) as stale:
        await _send(provider, body, headers, *args, now=signed_at + max_age + second)
    with pytest.raises(WebhookRejected) as ahead:
        await _send(provider, body, headers, *args, now=signed_at - max_ahead - second)

    assert stale.value.code is RejectionCode.STALE_TIMESTAMP
    assert ahead.value.code is RejectionCode.FUTURE_TIMESTAMP


async def test_mailgun_retry_of_same_event_accepted(
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    # Mailgun resends the original signature block when it retries, so the second delivery of
    # the same token with the same event must succeed. The gateway drops it as a duplicate.
    body = fixture_bytes("mailgun/delivered.json")
    args = (config, replay_cache, cert_fetcher)

    first = await _send("mailgun", body, {}, *args)
    retry = await _send("mailgun", body, {}, *args)

    assert first.token_reused is False
    assert retry.token_reused is True
    assert retry.events == first.events


async def _replay_token_onto(
    other_event: dict[str, Any], config: WebhookConfig, cache: RedisReplayCache, fetcher: Any
) -> None:
    original = json.loads(fixture_bytes("mailgun/delivered.json"))
    await _send("mailgun", json.dumps(original).encode(), {}, config, cache, fetcher)
    glued = dict(original, **{"event-data": other_event})
    await _send("mailgun", json.dumps(glued).encode(), {}, config, cache, fetcher)


async def test_mailgun_token_replay_rejected(
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    other = json.loads(fixture_bytes("mailgun/complained.json"))["event-data"]

    with pytest.raises(WebhookRejected) as rejected:
        await _replay_token_onto(other, config, replay_cache, cert_fetcher)

    assert rejected.value.status == 406
    assert rejected.value.code is RejectionCode.REPLAYED_TOKEN


async def test_mailgun_replay_with_shifted_timestamp_rejected(
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    # Same event id, other event time: not a retry of the first request.
    event = json.loads(fixture_bytes("mailgun/delivered.json"))["event-data"]
    shifted = dict(event, timestamp=event["timestamp"] + 60)

    with pytest.raises(WebhookRejected) as rejected:
        await _replay_token_onto(shifted, config, replay_cache, cert_fetcher)

    assert rejected.value.code is RejectionCode.REPLAYED_TOKEN


async def test_mailgun_token_stored_with_ttl(
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
    redis: Redis,
    replay_key_prefix: str,
) -> None:
    await _send(
        "mailgun", fixture_bytes("mailgun/opened.json"), {}, config, replay_cache, cert_fetcher
    )

    keys = [key async for key in redis.scan_iter(match=replay_key_prefix + "*")]
    assert len(keys) == 1
    assert keys[0].decode().startswith(replay_key_prefix + "mailgun:token:")
    ttl = await redis.ttl(keys[0])
    # A minute of slack: on a loaded machine seconds pass between the SET and this read.
    assert 24 * 3600 - 60 <= ttl <= 24 * 3600


async def test_mailgun_new_token_for_other_event_accepted(
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    payload = json.loads(fixture_bytes("mailgun/delivered.json"))
    payload["signature"] = dict(payload["signature"], token="f" * 50)
    resigned = sign_mailgun(payload, mailgun_signing_key())
    args = (config, replay_cache, cert_fetcher)

    await _send("mailgun", fixture_bytes("mailgun/delivered.json"), {}, *args)
    result = await _send("mailgun", json.dumps(resigned).encode(), {}, *args)

    assert result.token_reused is False
    assert len(result.events) == 1


async def test_mailgun_without_event_id_rejected_406(
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    payload = json.loads(fixture_bytes("mailgun/delivered.json"))
    del payload["event-data"]["id"]

    with pytest.raises(WebhookRejected) as rejected:
        await _send("mailgun", json.dumps(payload).encode(), {}, config, replay_cache, cert_fetcher)

    assert rejected.value.status == 406
    assert rejected.value.code is RejectionCode.INVALID_EVENT_DATA


async def test_replay_cache_down_is_unavailable(
    config: WebhookConfig, cert_fetcher: CertificateFetcher
) -> None:
    # Port 9 (discard) on loopback: nothing listens, so the connection is refused.
    unreachable = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=1)
    cache = RedisReplayCache(unreachable, key_prefix="test:webhooks:unreachable:")
    try:
        with pytest.raises(WebhookUnavailable) as unavailable:
            await _send(
                "mailgun", fixture_bytes("mailgun/delivered.json"), {}, config, cache, cert_fetcher
            )
    finally:
        await unreachable.aclose()

    assert unavailable.value.status == 503
    assert unavailable.value.code is RejectionCode.REPLAY_CACHE_UNAVAILABLE


@pytest.mark.parametrize("value", OUTSIDE_CALENDAR)
def test_iso_time_outside_calendar_invalid(value: str) -> None:
    with pytest.raises(ValueError, match="outside the years 1 to 9999"):
        parse_iso_datetime(value)


@pytest.mark.parametrize("value", OUTSIDE_CALENDAR)
async def test_postmark_time_outside_calendar_invalid(
    value: str,
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    record = json.loads(fixture_bytes(POSTMARK_HARD_BOUNCE["file"]))
    record["BouncedAt"] = value
    headers = POSTMARK_HARD_BOUNCE["request"]["headers"]

    result = await _send(
        "postmark", json.dumps(record).encode(), headers, config, replay_cache, cert_fetcher
    )

    assert result.events == []
    assert [(s.kind, s.reason) for s in result.skipped] == [
        ("Bounce/HardBounce", SkipReason.INVALID)
    ]
    assert result.skipped[0].detail.startswith("BouncedAt:")


@pytest.mark.parametrize("value", OUTSIDE_CALENDAR)
async def test_sns_timestamp_outside_calendar_rejected(
    value: str,
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
    certificate_host: CertificateHost,
) -> None:
    envelope = dict(json.loads(fixture_bytes("ses/delivery.json")), Timestamp=value)

    with pytest.raises(WebhookRejected) as rejected:
        await _send(
            "ses", json.dumps(envelope).encode(), {}, config, replay_cache, cert_fetcher
        )

    assert rejected.value.status == 403
    assert rejected.value.code is RejectionCode.INVALID_TIMESTAMP
    # The timestamp is checked before the signature, so no certificate is fetched.
    assert certificate_host.requests == []


@pytest.mark.parametrize("value", OUTSIDE_CALENDAR)
async def test_ses_event_time_outside_calendar_invalid(
    value: str,
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    envelope = json.loads(fixture_bytes("ses/delivery.json"))
    message = json.loads(envelope["Message"])
    message["delivery"]["timestamp"] = value
    signed = sign_sns(dict(envelope, Message=json.dumps(message)))

    result = await _send(
        "ses", json.dumps(signed).encode(), {}, config, replay_cache, cert_fetcher
    )

    assert result.events == []
    assert [(s.kind, s.reason) for s in result.skipped] == [("Delivery", SkipReason.INVALID)]
    assert "outside the years 1 to 9999" in result.skipped[0].detail


def _forged_failure(signed_payload: dict[str, Any]) -> bytes:
    """Return the signed payload with its event turned into a hard bounce of another recipient.

    The signature block, the event id and the event time stay as signed.
    """
    event_data = dict(
        signed_payload["event-data"],
        event="failed",
        severity="permanent",
        reason="bounce",
        recipient="victim@example.com",
    )
    return json.dumps(dict(signed_payload, **{"event-data": event_data})).encode()


async def test_mailgun_token_on_forged_content_rejected(
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    accepted = json.loads(fixture_bytes("mailgun/accepted.json"))
    args = (config, replay_cache, cert_fetcher)

    first = await _send("mailgun", fixture_bytes("mailgun/accepted.json"), {}, *args)
    with pytest.raises(WebhookRejected) as rejected:
        await _send("mailgun", _forged_failure(accepted), {}, *args)

    assert first.events == []
    assert rejected.value.status == 406
    assert rejected.value.code is RejectionCode.REPLAYED_TOKEN


async def test_mailgun_retry_with_other_key_order_accepted(
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    # A retry may serialise the same event data with its keys in another order.
    payload = json.loads(fixture_bytes("mailgun/delivered.json"))
    reordered = dict(payload, **{"event-data": dict(reversed(payload["event-data"].items()))})
    args = (config, replay_cache, cert_fetcher)

    first = await _send("mailgun", fixture_bytes("mailgun/delivered.json"), {}, *args)
    retry = await _send("mailgun", json.dumps(reordered).encode(), {}, *args)

    assert retry.token_reused is True
    assert retry.events == first.events


async def test_mailgun_token_kept_for_signature_window(
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
    redis: Redis,
    replay_key_prefix: str,
) -> None:
    # A token TTL shorter than the signature window would let a fresh signature be replayed.
    assert config.mailgun is not None
    short_ttl = MailgunSettings(signing_keys=config.mailgun.signing_keys, token_ttl_s=60)
    short_config = config.model_copy(update={"mailgun": short_ttl})

    await _send(
        "mailgun", fixture_bytes("mailgun/opened.json"), {}, short_config, replay_cache, cert_fetcher
    )

    keys = [key async for key in redis.scan_iter(match=replay_key_prefix + "*")]
    assert len(keys) == 1
    window_s = short_ttl.max_age_s + short_ttl.max_future_s
    # A minute of slack: on a loaded machine seconds pass between the SET and this read.
    assert window_s - 60 <= await redis.ttl(keys[0]) <= window_s


async def test_mailgun_retry_after_upgrade_accepted(
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
    redis: Redis,
    replay_key_prefix: str,
) -> None:
    # Earlier versions bound a token to `[event id, event time]`, and a retry must still match it.
    payload = json.loads(fixture_bytes("mailgun/delivered.json"))
    token_hash = hashlib.sha256(payload["signature"]["token"].encode()).hexdigest()
    event_data = payload["event-data"]
    legacy = json.dumps([event_data["id"], event_data["timestamp"]])
    await redis.set(f"{replay_key_prefix}mailgun:token:{token_hash}", legacy, ex=3600)

    retry = await _send(
        "mailgun", fixture_bytes("mailgun/delivered.json"), {}, config, replay_cache, cert_fetcher
    )

    assert retry.token_reused is True
    assert len(retry.events) == 1
