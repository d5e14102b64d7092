"""Configuration validation, request pre-checks and timestamp parsing."""

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from services.gateway.webhooks import (
    CertificateFetcher,
    MailgunSettings,
    PostmarkCredentials,
    RedisReplayCache,
    RejectionCode,
    SendGridSettings,
    SesSettings,
    WebhookConfig,
    WebhookRejected,
    verify_and_map,
)
from services.gateway.webhooks.timestamps import datetime_from_epoch, parse_iso_datetime

from .conftest import TEST_CLOCK, fixture_bytes


def _public_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _error_fields(error: ValidationError) -> set[str]:
    return {".".join(str(part) for part in item["loc"]) for item in error.errors()}


@pytest.mark.parametrize(
    ("model", "kwargs", "field"),
    [
        (SendGridSettings, {}, "verification_keys"),
        (SendGridSettings, {"verification_keys": ()}, "verification_keys"),
        (MailgunSettings, {}, "signing_keys"),
        (MailgunSettings, {"signing_keys": ("",)}, "signing_keys.0"),
        (PostmarkCredentials, {"username": "pm"}, "password"),
        (PostmarkCredentials, {"username": "pm", "password": ""}, "password"),
        (SesSettings, {}, "allowed_topic_arns"),
        (SesSettings, {"allowed_topic_arns": ("lead-nurture",)}, "allowed_topic_arns"),
        (MailgunSettings, {"signing_keys": ("k",), "max_age_s": 0}, "max_age_s"),
    ],
)
def test_settings_reject_missing_secrets(model: type, kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as error:
        model(**kwargs)

    assert field in _error_fields(error.value)


@pytest.mark.parametrize(
    "key",
    [
        "not a key",
        _public_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        _public_pem(ec.generate_private_key(ec.SECP384R1())),
    ],
    ids=["garbage", "rsa", "p384"],
)
def test_sendgrid_key_must_be_p256(key: str) -> None:
    with pytest.raises(ValidationError) as error:
        SendGridSettings(verification_keys=(key,))

    assert "verification_keys" in _error_fields(error.value)


def test_sendgrid_key_formats_agree() -> None:
    base64_der = fixture_bytes("sendgrid/keys/TEST_ONLY_sendgrid_verification_key.txt").decode()
    pem = fixture_bytes("sendgrid/keys/TEST_ONLY_sendgrid_ecdsa_p256_public_key.pem").decode()

    from_der = SendGridSettings(verification_keys=(base64_der,)).public_keys[0]
    from_pem = SendGridSettings(verification_keys=(pem,)).public_keys[0]

    assert from_der.public_numbers() == from_pem.public_numbers()


def test_secrets_hidden_in_repr() -> None:
    settings = MailgunSettings(signing_keys=("544108555a39d3a6a1a08740d58c35e5",))

    assert "544108555a39" not in repr(settings)


async def _send(
    provider: str,
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
    *,
    method: str = "POST",
    body: bytes = b"[]",
    now: datetime = TEST_CLOCK,
) -> None:
    await verify_and_map(
        provider,
        method=method,
        headers={},
        body=body,
        config=config,
        replay_cache=replay_cache,
        cert_fetcher=cert_fetcher,
        now=now,
    )


@pytest.mark.parametrize(
    ("provider", "method", "body", "status", "code"),
    [
        ("sparkpost", "POST", b"[]", 404, RejectionCode.UNKNOWN_PROVIDER),
        ("sendgrid", "GET", b"", 405, RejectionCode.METHOD_NOT_ALLOWED),
        ("sendgrid", "POST", b"x" * (5 * 1024 * 1024 + 1), 413, RejectionCode.BODY_TOO_LARGE),
    ],
)
async def test_request_prechecks(
    provider: str,
    method: str,
    body: bytes,
    status: int,
    code: RejectionCode,
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    with pytest.raises(WebhookRejected) as rejected:
        await _send(provider, config, replay_cache, cert_fetcher, method=method, body=body)

    assert rejected.value.status == status
    assert rejected.value.code is code


@pytest.mark.parametrize("provider", ["sendgrid", "mailgun", "postmark", "ses"])
async def test_unconfigured_provider_rejected(
    provider: str, replay_cache: RedisReplayCache, cert_fetcher: CertificateFetcher
) -> None:
    with pytest.raises(WebhookRejected) as rejected:
        await _send(provider, WebhookConfig(), replay_cache, cert_fetcher)

    assert rejected.value.code is RejectionCode.PROVIDER_NOT_CONFIGURED


async def test_naive_clock_is_an_error(
    config: WebhookConfig, replay_cache: RedisReplayCache, cert_fetcher: CertificateFetcher
) -> None:
    with pytest.raises(ValueError, match="now"):
        await _send("sendgrid", config, replay_cache, cert_fetcher, now=datetime(2025, 3, 14))


async def test_postmark_rejection_carries_challenge(
    config: WebhookConfig, replay_cache: RedisReplayCache, cert_fetcher: CertificateFetcher
) -> None:
    with pytest.raises(WebhookRejected) as rejected:
        await _send("postmark", config, replay_cache, cert_fetcher, body=b"{}")

    assert rejected.value.status == 401
    assert rejected.value.headers == {"WWW-Authenticate": 'Basic realm="postmark"'}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1741944600.00001, datetime(2025, 3, 14, 9, 30, 0, 10, tzinfo=UTC)),
        (1741942808.123456, datetime(2025, 3, 14, 9, 0, 8, 123456, tzinfo=UTC)),
        (1741942808.1234567, datetime(2025, 3, 14, 9, 0, 8, 123456, tzinfo=UTC)),
        (1741942809, datetime(2025, 3, 14, 9, 0, 9, tzinfo=UTC)),
        ("1741942809", datetime(2025, 3, 14, 9, 0, 9, tzinfo=UTC)),
    ],
)
def test_epoch_seconds_to_utc(value: object, expected: datetime) -> None:
    assert datetime_from_epoch(value) == expected


@pytest.mark.parametrize("value", [True, None, -1, "soon", float("nan"), 1e300, [1]])
def test_invalid_epoch_seconds(value: object) -> None:
    with pytest.raises(ValueError):
        datetime_from_epoch(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-14T05:00:07.6543217-04:00", datetime(2025, 3, 14, 9, 0, 7, 654321, tzinfo=UTC)),
        ("2025-03-14T09:00:00.100Z", datetime(2025, 3, 14, 9, 0, 0, 100000, tzinfo=UTC)),
        ("2025-03-14T09:00:00.100 +0000", datetime(2025, 3, 14, 9, 0, 0, 100000, tzinfo=UTC)),
        ("2025-03-14T11:00:00+02:00", datetime(2025, 3, 14, 9, 0, 0, tzinfo=UTC)),
    ],
)
def test_iso_datetime_to_utc(value: str, expected: datetime) -> None:
    parsed = parse_iso_datetime(value)

    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize("value", ["2025-03-14T09:00:00", "yesterday", 1741942809, None])
def test_invalid_iso_datetime(value: object) -> None:
    with pytest.raises(ValueError):
        parse_iso_datetime(value)
