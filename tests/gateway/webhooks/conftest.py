"""Fixtures for the webhook library tests: the signed request fixtures, keys, clock and fakes.

The request fixtures under tests/fixtures/webhooks are synthetic and signed with TEST_ONLY keys;
MANIFEST.json lists every request with its expected outcome.
"""

import base64
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from redis.asyncio import Redis

from services.gateway.webhooks import (
    CertificateFetcher,
    MailgunSettings,
    PostmarkCredentials,
    PostmarkSettings,
    RedisReplayCache,
    SendGridSettings,
    SesSettings,
    WebhookConfig,
)
from services.gateway.webhooks.ses import sns_string_to_sign

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "webhooks"
MANIFEST: dict[str, Any] = json.loads((FIXTURES / "MANIFEST.json").read_text("utf-8"))
TEST_CLOCK = datetime.fromisoformat(MANIFEST["test_clock_utc"])

SES = MANIFEST["providers"]["ses"]
CERT_URL, CERT_FILE = next(iter(SES["inject_certificate_for_url"].items()))


def fixture_bytes(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def fixture_json(relative: str) -> Any:
    return json.loads(fixture_bytes(relative))


def sendgrid_key_text() -> str:
    return fixture_bytes(
        MANIFEST["providers"]["sendgrid"]["verification_key_base64_der_file"]
    ).decode()


def mailgun_signing_key() -> str:
    # The key is the file's text without the trailing newline.
    return fixture_bytes(MANIFEST["providers"]["mailgun"]["signing_key_file"]).decode().rstrip("\n")


def postmark_credentials() -> dict[str, str]:
    return fixture_json(MANIFEST["providers"]["postmark"]["credentials_file"])


def sns_private_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(fixture_bytes(SES["private_key_file"]), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def sign_sns(envelope: dict[str, Any], key: rsa.RSAPrivateKey | None = None) -> dict[str, Any]:
    """Return a copy of `envelope` signed (version 2) with the fixture key or `key`."""
    signed = dict(envelope, SignatureVersion="2")
    signature = (key or sns_private_key()).sign(
        sns_string_to_sign(signed), padding.PKCS1v15(), hashes.SHA256()
    )
    signed["Signature"] = base64.b64encode(signature).decode()
    return signed


def sign_mailgun(payload: dict[str, Any], key: str) -> dict[str, Any]:
    """Return a copy of `payload` whose signature block is recomputed with `key`."""
    block = dict(payload["signature"])
    block["signature"] = hmac.new(
        key.encode(), (block["timestamp"] + block["token"]).encode(), hashlib.sha256
    ).hexdigest()
    return dict(payload, signature=block)


def sns_headers(envelope: dict[str, Any]) -> dict[str, str]:
    return {
        "Content-Type": "text/plain; charset=UTF-8",
        "x-amz-sns-message-type": envelope["Type"],
        "x-amz-sns-message-id": envelope["MessageId"],
    }


def build_config() -> WebhookConfig:
    credentials = postmark_credentials()
    return WebhookConfig(
        sendgrid=SendGridSettings(verification_keys=(sendgrid_key_text(),)),
        mailgun=MailgunSettings(signing_keys=(mailgun_signing_key(),)),
        postmark=PostmarkSettings(
            credentials=(
                PostmarkCredentials(
                    username=credentials["basic_auth_username"],
                    password=credentials["basic_auth_password"],
                ),
            ),
            shared_header_name=credentials["custom_header_name"],
            shared_header_values=(credentials["custom_header_value"],),
        ),
        ses=SesSettings(allowed_topic_arns=tuple(SES["allowed_topic_arns"])),
    )


@pytest.fixture
def config() -> WebhookConfig:
    return build_config()


@pytest.fixture
def now() -> datetime:
    return TEST_CLOCK


@dataclass
class CertificateHost:
    """Fake of the SNS certificate host: serves the fixture certificate and records requests."""

    documents: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    failure: Callable[[httpx.Request], httpx.Response] | None = None

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.failure is not None:
            return self.failure(request)
        status, content = self.documents.get(str(request.url), (404, b"not found"))
        return httpx.Response(status, content=content)


@pytest.fixture
def certificate_host() -> CertificateHost:
    return CertificateHost(documents={CERT_URL: (200, fixture_bytes(CERT_FILE))})


@pytest.fixture
async def cert_fetcher(certificate_host: CertificateHost) -> AsyncIterator[CertificateFetcher]:
    transport = httpx.MockTransport(certificate_host.handle)
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(2.0)) as client:
        yield CertificateFetcher(client)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    # The session environment exports the Redis of this test run (embedded or NURTURE_TEST_REDIS_URL).
    client = Redis.from_url(os.environ["REDIS_URL"])
    yield client
    await client.aclose()


@pytest.fixture
async def replay_key_prefix(redis: Redis) -> AsyncIterator[str]:
    prefix = f"test:webhooks:{uuid.uuid4().hex}:"
    yield prefix
    keys = [key async for key in redis.scan_iter(match=prefix + "*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
def replay_cache(redis: Redis, replay_key_prefix: str) -> RedisReplayCache:
    return RedisReplayCache(redis, key_prefix=replay_key_prefix)


def certificate_for(key: rsa.RSAPrivateKey, *, not_before: datetime, not_after: datetime) -> bytes:
    """Return a self-signed PEM certificate for `key`, for certificate-handling tests."""
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "TEST ONLY sns")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)
