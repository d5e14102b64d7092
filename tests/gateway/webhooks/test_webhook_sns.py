"""SNS certificate URLs, certificate download and subscription confirmation.

SigningCertURL is not covered by the signature, so each bad URL below is put into an otherwise
validly signed message: only the URL check can stop it, and it must do so before any request.
"""

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.gateway.webhooks import (
    CertificateFetcher,
    RedisReplayCache,
    RejectionCode,
    WebhookConfig,
    WebhookRejected,
    WebhookResult,
    WebhookUnavailable,
    confirm_sns_subscription,
    validate_signing_cert_url,
    validate_subscribe_url,
    verify_and_map,
)

from .conftest import (
    CERT_URL,
    TEST_CLOCK,
    CertificateHost,
    certificate_for,
    fixture_bytes,
    sign_sns,
)

CERT_PATH = "/SimpleNotificationService-00000000000000000000000000000000.pem"

BAD_CERT_URLS = [
    pytest.param("http://sns.us-east-1.amazonaws.com" + CERT_PATH, id="http"),
    pytest.param("HTTPS://sns.us-east-1.amazonaws.com" + CERT_PATH, id="upper-case-scheme"),
    pytest.param("https://user@sns.us-east-1.amazonaws.com" + CERT_PATH, id="userinfo"),
    pytest.param("https://sns.us-east-1.amazonaws.com@evil.test" + CERT_PATH, id="userinfo-host"),
    pytest.param("https://evil.test\\@sns.us-east-1.amazonaws.com" + CERT_PATH, id="backslash"),
    pytest.param("https://sns.us-east-1.amazonaws.com.evil.test" + CERT_PATH, id="suffix"),
    pytest.param("https://sns.us-east-1.amazonaws.com." + CERT_PATH, id="trailing-dot"),
    pytest.param("https://sns.us-east-1.amazonaws.com:8443" + CERT_PATH, id="port"),
    pytest.param("https://sns.us-east-1.amazonaws.com:443" + CERT_PATH, id="explicit-443"),
    pytest.param("https://203.0.113.7" + CERT_PATH, id="ipv4-literal"),
    pytest.param("https://[::1]" + CERT_PATH, id="ipv6-literal"),
    pytest.param("https://s3.amazonaws.com/bucket" + CERT_PATH, id="s3-host"),
    pytest.param("https://sns.amazonaws.com" + CERT_PATH, id="no-region"),
    pytest.param("https://sns.us-east-1.amazonaws.c\u043em" + CERT_PATH, id="cyrillic-o"),
    pytest.param("https://sns.us-east-1.amazonaws.com/cert.txt", id="not-pem"),
    pytest.param("https://sns.us-east-1.amazonaws.com/cert.pem?x=.pem", id="query"),
    pytest.param("https://sns.us-east-1.amazonaws.com/cert.pem#.pem", id="fragment"),
    pytest.param("https://sns.us-east-1.amazonaws.com/cert%2Epem", id="percent-encoded"),
    pytest.param("https://sns.us-east-1.amazonaws.com/a b.pem", id="space"),
    pytest.param(" https://sns.us-east-1.amazonaws.com" + CERT_PATH, id="leading-space"),
    pytest.param("//sns.us-east-1.amazonaws.com" + CERT_PATH, id="scheme-relative"),
]

GOOD_CERT_URLS = [
    "https://sns.us-east-1.amazonaws.com" + CERT_PATH,
    "https://sns.us-gov-west-1.amazonaws.com" + CERT_PATH,
    "https://sns.cn-north-1.amazonaws.com.cn" + CERT_PATH,
]


async def _send_envelope(
    envelope: dict[str, Any],
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
    now: datetime = TEST_CLOCK,
) -> WebhookResult:
    return await verify_and_map(
        "ses",
        method="POST",
        headers={"Content-Type": "text/plain; charset=UTF-8"},
        body=json.dumps(envelope).encode(),
        config=config,
        replay_cache=replay_cache,
        cert_fetcher=cert_fetcher,
        now=now,
    )


def _delivery() -> dict[str, Any]:
    return json.loads(fixture_bytes("ses/delivery.json"))


@pytest.mark.parametrize("url", BAD_CERT_URLS)
async def test_bad_cert_url_rejected_without_fetch(
    url: str,
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
    certificate_host: CertificateHost,
) -> None:
    envelope = dict(_delivery(), SigningCertURL=url)

    with pytest.raises(WebhookRejected) as rejected:
        await _send_envelope(envelope, config, replay_cache, cert_fetcher)

    assert rejected.value.status == 403
    assert rejected.value.code is RejectionCode.INVALID_CERTIFICATE_URL
    assert certificate_host.requests == []


@pytest.mark.parametrize("url", BAD_CERT_URLS)
async def test_fetcher_refuses_bad_url(
    url: str, cert_fetcher: CertificateFetcher, certificate_host: CertificateHost
) -> None:
    with pytest.raises(WebhookRejected):
        await cert_fetcher.fetch(url)

    assert certificate_host.requests == []


@pytest.mark.parametrize("url", GOOD_CERT_URLS)
def test_sns_cert_urls_accepted(url: str) -> None:
    assert validate_signing_cert_url(url) == url


async def test_certificate_fetched_once(
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
    certificate_host: CertificateHost,
) -> None:
    for name in ("ses/delivery.json", "ses/open.json", "ses/click.json"):
        await _send_envelope(json.loads(fixture_bytes(name)), config, replay_cache, cert_fetcher)

    assert [str(request.url) for request in certificate_host.requests] == [CERT_URL]
    assert certificate_host.requests[0].method == "GET"


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (500, WebhookUnavailable, RejectionCode.CERTIFICATE_UNAVAILABLE),
        (404, WebhookRejected, RejectionCode.INVALID_CERTIFICATE),
        (302, WebhookRejected, RejectionCode.INVALID_CERTIFICATE),
    ],
)
async def test_certificate_host_errors(
    status: int,
    error: type[Exception],
    code: RejectionCode,
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
    certificate_host: CertificateHost,
) -> None:
    redirect = {"Location": "https://evil.test/cert.pem"}
    certificate_host.failure = lambda request: httpx.Response(status, headers=redirect)

    with pytest.raises(error) as raised:
        await _send_envelope(_delivery(), config, replay_cache, cert_fetcher)

    assert raised.value.code is code
    assert [str(request.url) for request in certificate_host.requests] == [CERT_URL]


async def test_certificate_timeout_is_unavailable(
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
    certificate_host: CertificateHost,
) -> None:
    def time_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    certificate_host.failure = time_out

    with pytest.raises(WebhookUnavailable) as raised:
        await _send_envelope(_delivery(), config, replay_cache, cert_fetcher)

    assert raised.value.status == 503


@pytest.mark.parametrize(
    "content", [b"not a certificate", b"-----BEGIN CERTIFICATE-----\n" + b"A" * 70_000]
)
async def test_unusable_certificate_rejected(
    content: bytes,
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
    certificate_host: CertificateHost,
) -> None:
    certificate_host.documents[CERT_URL] = (200, content)

    with pytest.raises(WebhookRejected) as rejected:
        await _send_envelope(_delivery(), config, replay_cache, cert_fetcher)

    assert rejected.value.code is RejectionCode.INVALID_CERTIFICATE


async def test_expired_certificate_rejected(
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
    certificate_host: CertificateHost,
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    expired = certificate_for(
        key, not_before=datetime(2024, 1, 1, tzinfo=UTC), not_after=datetime(2025, 1, 1, tzinfo=UTC)
    )
    certificate_host.documents[CERT_URL] = (200, expired)

    with pytest.raises(WebhookRejected) as rejected:
        await _send_envelope(sign_sns(_delivery(), key), config, replay_cache, cert_fetcher)

    assert rejected.value.code is RejectionCode.INVALID_CERTIFICATE


def _confirmation(subscribe_url: str) -> dict[str, Any]:
    envelope = json.loads(fixture_bytes("ses/subscription_confirmation.json"))
    return sign_sns(dict(envelope, SubscribeURL=subscribe_url))


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.us-east-1.amazonaws.com.evil.test/?Action=ConfirmSubscription",
        "http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
        "https://user@sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
        "https://169.254.169.254/latest/meta-data/",
        "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription#x",
    ],
)
async def test_bad_subscribe_url_rejected(
    url: str,
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
    certificate_host: CertificateHost,
) -> None:
    with pytest.raises(WebhookRejected) as rejected:
        await _send_envelope(_confirmation(url), config, replay_cache, cert_fetcher)

    assert rejected.value.code is RejectionCode.INVALID_SUBSCRIBE_URL
    assert [str(request.url) for request in certificate_host.requests] == [CERT_URL]


async def test_confirmation_from_foreign_topic_rejected(
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    envelope = json.loads(fixture_bytes("ses/subscription_confirmation.json"))
    foreign = sign_sns(dict(envelope, TopicArn="arn:aws:sns:us-east-1:210987654321:other"))

    with pytest.raises(WebhookRejected) as rejected:
        await _send_envelope(foreign, config, replay_cache, cert_fetcher)

    assert rejected.value.code is RejectionCode.TOPIC_NOT_ALLOWED


async def test_confirm_subscription_gets_url() -> None:
    url = json.loads(fixture_bytes("ses/subscription_confirmation.json"))["SubscribeURL"]
    seen: list[httpx.Request] = []

    def sns(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="<ConfirmSubscriptionResponse/>")

    async with httpx.AsyncClient(transport=httpx.MockTransport(sns)) as client:
        await confirm_sns_subscription(client, url)

    assert [(request.method, str(request.url)) for request in seen] == [("GET", url)]


async def test_confirm_subscription_checks_url_first() -> None:
    seen: list[httpx.Request] = []

    def sns(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(sns)) as client:
        with pytest.raises(WebhookRejected):
            await confirm_sns_subscription(client, "https://evil.test/?Action=ConfirmSubscription")

    assert seen == []


def test_subscribe_url_accepted() -> None:
    url = json.loads(fixture_bytes("ses/subscription_confirmation.json"))["SubscribeURL"]

    assert validate_subscribe_url(url) == url


async def test_raw_delivery_header_rejected(
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
    certificate_host: CertificateHost,
) -> None:
    with pytest.raises(WebhookRejected) as rejected:
        await verify_and_map(
            "ses",
            method="POST",
            headers={"X-Amz-Sns-Rawdelivery": "true"},
            body=fixture_bytes("ses/delivery.json"),
            config=config,
            replay_cache=replay_cache,
            cert_fetcher=cert_fetcher,
            now=TEST_CLOCK,
        )

    assert rejected.value.code is RejectionCode.RAW_MESSAGE_DELIVERY
    assert certificate_host.requests == []


@pytest.mark.parametrize("subject", [None, "Amazon SES Email Event Notification"])
async def test_optional_subject_signed_when_present(
    subject: str | None,
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    envelope = sign_sns(dict(_delivery(), Subject=subject))

    result = await _send_envelope(envelope, config, replay_cache, cert_fetcher)
    tampered = dict(envelope, Subject="changed")
    with pytest.raises(WebhookRejected) as rejected:
        await _send_envelope(tampered, config, replay_cache, cert_fetcher)

    assert [event.type for event in result.events] == ["delivered"]
    assert rejected.value.code is RejectionCode.BAD_SIGNATURE
