"""Every request in the fixture MANIFEST.json goes through `verify_and_map` with the test clock.

Positive requests must produce exactly the expected common events. Negative ones must be rejected
with the provider's status, and their signature check alone must pass or fail as the manifest
records.
"""

import hashlib
import json
import re
from typing import Any

import pytest
from cryptography import x509

from services.gateway.webhooks import (
    CertificateFetcher,
    RedisReplayCache,
    RejectionCode,
    WebhookConfig,
    WebhookEvent,
    WebhookRejected,
    verify_and_map,
)
from services.gateway.webhooks.mailgun import mailgun_signature_matches
from services.gateway.webhooks.sendgrid import sendgrid_signature_matches
from services.gateway.webhooks.ses import sns_signature_matches

from .conftest import (
    CERT_FILE,
    CERT_URL,
    MANIFEST,
    TEST_CLOCK,
    CertificateHost,
    fixture_bytes,
    mailgun_signing_key,
)

REJECTION_STATUS = {"sendgrid": 401, "mailgun": 401, "postmark": 401, "ses": 403}

EXPECTED_CODES = {
    "sendgrid/negative/tampered_body.raw": RejectionCode.BAD_SIGNATURE,
    "sendgrid/negative/crlf_stripped.raw": RejectionCode.BAD_SIGNATURE,
    "sendgrid/negative/reencoded_json.raw": RejectionCode.BAD_SIGNATURE,
    "sendgrid/negative/timestamp_header_changed.raw": RejectionCode.BAD_SIGNATURE,
    "sendgrid/negative/signed_with_other_key.raw": RejectionCode.BAD_SIGNATURE,
    "sendgrid/negative/missing_signature_header.raw": RejectionCode.MISSING_SIGNATURE,
    "sendgrid/negative/garbage_signature_header.raw": RejectionCode.MALFORMED_SIGNATURE,
    "sendgrid/negative/stale_timestamp.raw": RejectionCode.STALE_TIMESTAMP,
    "sendgrid/negative/future_timestamp.raw": RejectionCode.FUTURE_TIMESTAMP,
    "mailgun/negative/bad_signature.json": RejectionCode.BAD_SIGNATURE,
    "mailgun/negative/timestamp_changed.json": RejectionCode.BAD_SIGNATURE,
    "mailgun/negative/signed_with_other_key.json": RejectionCode.BAD_SIGNATURE,
    "mailgun/negative/replayed_token_other_event.json": RejectionCode.REPLAYED_TOKEN,
    "mailgun/negative/stale_timestamp.json": RejectionCode.STALE_TIMESTAMP,
    "mailgun/negative/missing_signature.json": RejectionCode.MISSING_SIGNATURE,
    "postmark/no credentials at all -> 401": RejectionCode.MISSING_CREDENTIALS,
    "postmark/wrong Basic password -> 401": RejectionCode.BAD_CREDENTIALS,
    "postmark/right Basic auth but wrong custom header": RejectionCode.BAD_CREDENTIALS,
    "ses/negative/tampered_message.json": RejectionCode.BAD_SIGNATURE,
    "ses/negative/cert_url_http.json": RejectionCode.INVALID_CERTIFICATE_URL,
    "ses/negative/cert_url_lookalike_host.json": RejectionCode.INVALID_CERTIFICATE_URL,
    "ses/negative/cert_url_s3_host.json": RejectionCode.INVALID_CERTIFICATE_URL,
    "ses/negative/cert_url_not_pem.json": RejectionCode.INVALID_CERTIFICATE_URL,
    "ses/negative/unexpected_topic_arn.json": RejectionCode.TOPIC_NOT_ALLOWED,
    "ses/negative/stale_timestamp.json": RejectionCode.STALE_TIMESTAMP,
    "ses/negative/unsupported_signature_version.json": RejectionCode.UNSUPPORTED_SIGNATURE_VERSION,
    "ses/negative/signed_with_other_key.json": RejectionCode.BAD_SIGNATURE,
    "ses/negative/header_type_mismatch.json": RejectionCode.HEADER_MISMATCH,
    "ses/negative/raw_message_delivery.json": RejectionCode.RAW_MESSAGE_DELIVERY,
}


def _case_key(provider: str, entry: dict[str, Any]) -> str:
    # The Postmark negatives share one body file and differ only in their headers.
    if provider == "postmark":
        return "postmark/" + entry["description"].split(" (")[0]
    return entry["file"]


def _params(section: str) -> list[Any]:
    return [
        pytest.param(provider, entry, id=re.sub(r"[^\w/.-]+", "_", _case_key(provider, entry)))
        for provider, settings in MANIFEST["providers"].items()
        for entry in settings[section]
    ]


async def _send(
    provider: str,
    entry: dict[str, Any],
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
    body: bytes | None = None,
) -> Any:
    return await verify_and_map(
        provider,
        method=entry["request"]["method"],
        headers=entry["request"]["headers"],
        body=fixture_bytes(entry["file"]) if body is None else body,
        config=config,
        replay_cache=replay_cache,
        cert_fetcher=cert_fetcher,
        now=TEST_CLOCK,
    )


def _resolve_raw(pointer: str, body: bytes) -> Any:
    document = json.loads(body)
    if pointer.startswith("Message"):
        return json.loads(document["Message"])
    for token in [part for part in pointer.split("/")[1:]]:
        token = token.replace("~1", "/").replace("~0", "~")
        document = document[int(token)] if isinstance(document, list) else document[token]
    return document


def _assert_event(got: WebhookEvent, want: dict[str, Any], body: bytes) -> None:
    for name in (
        "provider",
        "provider_event_id",
        "type",
        "email",
        "message_id",
        "url",
        "smtp_status",
        "diagnostic",
        "machine_open",
    ):
        assert getattr(got, name) == want[name], name

    expected_at = want["occurred_at"]
    assert got.occurred_at == TEST_CLOCK.fromisoformat(expected_at), expected_at
    assert got.occurred_at.utcoffset().total_seconds() == 0
    assert got.raw == _resolve_raw(want["raw_pointer"], body)

    canonical = want.get("provider_event_id_canonical_input")
    if canonical is not None:
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        assert got.provider_event_id == "sha256:" + digest


@pytest.mark.parametrize(("provider", "entry"), _params("fixtures"))
async def test_positive_fixture_maps_to_expected_events(
    provider: str,
    entry: dict[str, Any],
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
    certificate_host: CertificateHost,
) -> None:
    body = fixture_bytes(entry["file"])
    assert hashlib.sha256(body).hexdigest() == entry["body_sha256"], "fixture bytes changed"

    result = await _send(provider, entry, config, replay_cache, cert_fetcher)

    expected = entry["expect"]
    assert result.provider == provider
    assert len(result.events) == len(expected["events"])
    for got, want in zip(result.events, expected["events"], strict=True):
        _assert_event(got, want, body)
    if "unique_after_dedup" in expected:
        unique = {event.provider_event_id for event in result.events}
        assert len(unique) == expected["unique_after_dedup"]
    assert result.action == expected.get("action", "none")
    if result.action == "confirm_subscription":
        assert result.subscribe_url == json.loads(body)["SubscribeURL"]
    if provider == "ses":
        assert [str(request.url) for request in certificate_host.requests] == [CERT_URL]


def _signature_alone_valid(
    provider: str, entry: dict[str, Any], body: bytes, config: WebhookConfig
) -> bool:
    """Run only the cryptographic check of a request, as the manifest's `signature_valid` means."""
    headers = {name.lower(): value for name, value in entry["request"]["headers"].items()}
    if provider == "sendgrid":
        timestamp = headers.get("x-twilio-email-event-webhook-timestamp")
        signature = headers.get("x-twilio-email-event-webhook-signature")
        if timestamp is None or signature is None:
            return False
        key = config.sendgrid.public_keys[0]
        return sendgrid_signature_matches(key, timestamp=timestamp, body=body, signature=signature)
    if provider == "mailgun":
        block = json.loads(body).get("signature")
        if not isinstance(block, dict):
            return False
        return mailgun_signature_matches(
            mailgun_signing_key(),
            timestamp=block["timestamp"],
            token=block["token"],
            signature=block["signature"],
        )
    envelope = json.loads(body)
    if "Signature" not in envelope:
        return False
    certificate = x509.load_pem_x509_certificate(fixture_bytes(CERT_FILE))
    return sns_signature_matches(envelope, certificate)


@pytest.mark.parametrize(("provider", "entry"), _params("negative"))
async def test_negative_fixture_is_rejected(
    provider: str,
    entry: dict[str, Any],
    config: WebhookConfig,
    replay_cache: RedisReplayCache,
    cert_fetcher: CertificateFetcher,
    certificate_host: CertificateHost,
) -> None:
    body = fixture_bytes(entry["file"])
    assert hashlib.sha256(body).hexdigest() == entry["body_sha256"], "fixture bytes changed"
    key = _case_key(provider, entry)
    if key == "mailgun/negative/replayed_token_other_event.json":
        # The replay reuses the token of delivered.json, which must have been seen first.
        first = next(
            e
            for e in MANIFEST["providers"]["mailgun"]["fixtures"]
            if e["file"] == "mailgun/delivered.json"
        )
        await _send(provider, first, config, replay_cache, cert_fetcher)

    with pytest.raises(WebhookRejected) as rejected:
        await _send(provider, entry, config, replay_cache, cert_fetcher)

    expected_status = (
        406 if rejected.value.code is RejectionCode.REPLAYED_TOKEN else REJECTION_STATUS[provider]
    )
    assert rejected.value.status == expected_status
    assert rejected.value.code is EXPECTED_CODES[key]
    assert entry["expect"]["events"] == []
    if "signature_valid" in entry["expect"]:
        assert (
            _signature_alone_valid(provider, entry, body, config)
            is entry["expect"]["signature_valid"]
        )
    if "cert_url" in key:
        assert certificate_host.requests == []


def test_every_negative_fixture_has_an_expected_code() -> None:
    keys = {
        _case_key(provider, entry) for provider, entry in (p.values for p in _params("negative"))
    }

    assert keys == set(EXPECTED_CODES)
