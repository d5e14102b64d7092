"""A forged variant of every positive fixture is rejected.

A variant changes one byte of what the signature covers, or is signed with a key we never
configured. Postmark has no signature, so its variants change one character of a credential.
"""

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.gateway.webhooks import (
    CertificateFetcher,
    RedisReplayCache,
    RejectionCode,
    WebhookConfig,
    WebhookRejected,
    verify_and_map,
)

from .conftest import MANIFEST, TEST_CLOCK, fixture_bytes, sign_sns

STRANGER_EC_KEY = ec.generate_private_key(ec.SECP256R1())
STRANGER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
STRANGER_HMAC_KEY = "0123456789abcdef0123456789abcdef"


def _positive(provider: str) -> list[Any]:
    entries = MANIFEST["providers"][provider]["fixtures"]
    return [pytest.param(entry, id=entry["file"]) for entry in entries]


def _flip(text: str, position: int) -> str:
    """Change the character at `position` to another one of the same kind."""
    character = text[position]
    if character.isdigit():
        replacement = "0" if character == "1" else "1"
    else:
        replacement = "y" if character == "x" else "x"
    return text[:position] + replacement + text[position + 1 :]


def _flip_middle_letter(text: str) -> str:
    position = len(text) // 2
    while not text[position].isalnum():
        position += 1
    return _flip(text, position)


async def _assert_rejected(
    provider: str,
    headers: dict[str, str],
    body: bytes,
    code: RejectionCode,
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    with pytest.raises(WebhookRejected) as rejected:
        await verify_and_map(
            provider,
            method="POST",
            headers=headers,
            body=body,
            config=config,
            replay_cache=replay_cache,
            cert_fetcher=cert_fetcher,
            now=TEST_CLOCK,
        )
    assert rejected.value.code is code


@pytest.mark.parametrize("entry", _positive("sendgrid"))
async def test_sendgrid_forgeries_rejected(
    entry: dict[str, Any],
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    headers = dict(entry["request"]["headers"])
    body = fixture_bytes(entry["file"])
    changed = bytearray(body)
    changed[len(body) // 2] ^= 0x01
    timestamp = headers["X-Twilio-Email-Event-Webhook-Timestamp"].encode()
    stranger_signature = STRANGER_EC_KEY.sign(timestamp + body, ec.ECDSA(hashes.SHA256()))
    stranger_headers = dict(
        headers,
        **{"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(stranger_signature).decode()},
    )

    args = (config, replay_cache, cert_fetcher)
    await _assert_rejected("sendgrid", headers, bytes(changed), RejectionCode.BAD_SIGNATURE, *args)
    await _assert_rejected("sendgrid", stranger_headers, body, RejectionCode.BAD_SIGNATURE, *args)


@pytest.mark.parametrize("entry", _positive("mailgun"))
async def test_mailgun_forgeries_rejected(
    entry: dict[str, Any],
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    payload = json.loads(fixture_bytes(entry["file"]))
    block = payload["signature"]
    altered = dict(payload, signature=dict(block, signature=_flip(block["signature"], 10)))
    stranger = hmac.new(
        STRANGER_HMAC_KEY.encode(), (block["timestamp"] + block["token"]).encode(), hashlib.sha256
    ).hexdigest()
    foreign = dict(payload, signature=dict(block, signature=stranger))

    args = (config, replay_cache, cert_fetcher)
    headers = entry["request"]["headers"]
    await _assert_rejected(
        "mailgun", headers, json.dumps(altered).encode(), RejectionCode.BAD_SIGNATURE, *args
    )
    await _assert_rejected(
        "mailgun", headers, json.dumps(foreign).encode(), RejectionCode.BAD_SIGNATURE, *args
    )


@pytest.mark.parametrize("entry", _positive("postmark"))
async def test_postmark_forgeries_rejected(
    entry: dict[str, Any],
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    headers = dict(entry["request"]["headers"])
    body = fixture_bytes(entry["file"])
    username, password = base64.b64decode(headers["Authorization"][6:]).decode().split(":", 1)
    wrong_password = f"{username}:{_flip(password, len(password) - 1)}"
    bad_basic = dict(
        headers, Authorization="Basic " + base64.b64encode(wrong_password.encode()).decode()
    )
    secret = headers["X-Webhook-Secret"]
    bad_header = dict(headers, **{"X-Webhook-Secret": _flip(secret, len(secret) - 1)})

    args = (config, replay_cache, cert_fetcher)
    await _assert_rejected("postmark", bad_basic, body, RejectionCode.BAD_CREDENTIALS, *args)
    await _assert_rejected("postmark", bad_header, body, RejectionCode.BAD_CREDENTIALS, *args)


@pytest.mark.parametrize("entry", _positive("ses"))
async def test_ses_forgeries_rejected(
    entry: dict[str, Any],
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    envelope = json.loads(fixture_bytes(entry["file"]))
    altered = dict(envelope, Message=_flip_middle_letter(envelope["Message"]))
    foreign = sign_sns(envelope, STRANGER_RSA_KEY)

    args = (config, replay_cache, cert_fetcher)
    headers = entry["request"]["headers"]
    await _assert_rejected(
        "ses", headers, json.dumps(altered).encode(), RejectionCode.BAD_SIGNATURE, *args
    )
    await _assert_rejected(
        "ses", headers, json.dumps(foreign).encode(), RejectionCode.BAD_SIGNATURE, *args
    )


async def test_sns_resigned_fixture_accepted(
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
) -> None:
    # The forgeries above fail only because of the changed byte or key: re-signing with the
    # fixture key is accepted, so the helper itself produces valid signatures.
    envelope = json.loads(fixture_bytes("ses/delivery.json"))

    result = await verify_and_map(
        "ses",
        method="POST",
        headers={},
        body=json.dumps(sign_sns(envelope)).encode(),
        config=config,
        replay_cache=replay_cache,
        cert_fetcher=cert_fetcher,
        now=TEST_CLOCK,
    )

    assert [event.type for event in result.events] == ["delivered"]
