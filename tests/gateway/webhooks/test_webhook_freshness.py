"""Freshness windows and Mailgun token replay."""

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from services.gateway.webhooks import (
    CertificateFetcher,
    RedisReplayCache,
    RejectionCode,
    WebhookConfig,
    WebhookRejected,
    WebhookResult,
    WebhookUnavailable,
    verify_and_map,
)
from services.gateway.webhooks.timestamps import datetime_from_epoch, parse_iso_datetime

from .conftest import MANIFEST, TEST_CLOCK, fixture_bytes, mailgun_signing_key, sign_mailgun

SENDGRID_DROPPED = next(
    entry
    for entry in MANIFEST["providers"]["sendgrid"]["fixtures"]
    if entry["file"] == "sendgrid/dropped.json"
)


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
