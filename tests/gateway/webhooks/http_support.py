"""Helpers for sending provider webhooks through the gateway's HTTP routes in tests."""

import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlmodel import select

from services.gateway.receipts.models import WebhookReceipt
from services.gateway.receipts.service import WebhookVerifier
from services.gateway.webhooks import CertificateFetcher, RedisReplayCache
from services.kit import clock
from tests.gateway.conftest import Gateway, gateway_with_contacts

from .conftest import CERT_FILE, CERT_URL, MANIFEST, TEST_CLOCK, CertificateHost, build_config, fixture_bytes

REJECTION_STATUS = {"sendgrid": 401, "mailgun": 401, "postmark": 401, "ses": 403}


@dataclass
class WebhookGateway:
    """The gateway configured with the TEST_ONLY webhook secrets, on the fixtures' clock."""

    gateway: Gateway
    certificate_host: CertificateHost

    async def post(self, provider: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        return await self.gateway.client.post(f"/v1/webhooks/{provider}", content=body, headers=headers)

    async def receipts(self, provider: str, event_ids: list[str]) -> list[WebhookReceipt]:
        async with self.gateway.app.state.db.session() as session:
            query = select(WebhookReceipt).where(
                WebhookReceipt.provider == provider, WebhookReceipt.provider_event_id.in_(event_ids)  # type: ignore[attr-defined]
            )
            return list((await session.exec(query)).all())

    async def receipt(self, row_id: str) -> WebhookReceipt:
        async with self.gateway.app.state.db.session() as session:
            row = await session.get(WebhookReceipt, row_id)
        assert row is not None, f"no receipt {row_id}"
        return row

    async def receipt_count(self, provider: str) -> int:
        async with self.gateway.app.state.db.session() as session:
            rows = (await session.exec(select(WebhookReceipt.id).where(WebhookReceipt.provider == provider))).all()
        return len(rows)

    async def contact(self, email: str) -> dict[str, Any]:
        response = await self.gateway.client.get("/v1/contacts", params={"email": email}, headers=self.gateway.auth)
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert len(items) == 1, f"expected one contact with email {email}, got {items}"
        return items[0]  # type: ignore[no-any-return]

    async def timeline(self, email: str) -> list[dict[str, Any]]:
        contact_id = (await self.contact(email))["id"]
        response = await self.gateway.client.get(
            f"/v1/contacts/{contact_id}/timeline", params={"limit": 500}, headers=self.gateway.auth
        )
        assert response.status_code == 200, response.text
        return response.json()["items"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
async def webhook_gateway() -> AsyncIterator[WebhookGateway]:
    """The gateway and contacts apps, started once per test module (their start-up is the slow part)."""
    async with gateway_with_contacts() as gateway:
        app = gateway.app
        host = CertificateHost(documents={CERT_URL: (200, fixture_bytes(CERT_FILE))})
        prefix = f"test:webhooks:{uuid.uuid4().hex}:"
        async with httpx.AsyncClient(transport=httpx.MockTransport(host.handle)) as certificate_client:
            app.state.webhook_verifier = WebhookVerifier(
                config=build_config(),
                replay_cache=RedisReplayCache(app.state.redis, key_prefix=prefix),
                cert_fetcher=CertificateFetcher(certificate_client),
            )
            yield WebhookGateway(gateway, host)

        replay_keys = [key async for key in app.state.redis.scan_iter(match=prefix + "*")]
        if replay_keys:
            await app.state.redis.delete(*replay_keys)


@pytest.fixture(autouse=True)
def fixtures_clock(webhook_gateway: WebhookGateway) -> None:
    """Freeze the platform clock at the fixtures' test clock for every test of the module."""
    clock.freeze(TEST_CLOCK)


def sendgrid_request(events: list[dict[str, Any]], *, at: datetime = TEST_CLOCK) -> tuple[dict[str, str], bytes]:
    """Sign a SendGrid batch with the TEST_ONLY key, as SendGrid does: timestamp then raw body."""
    body = json.dumps(events).encode() + b"\r\n"
    timestamp = str(int(at.timestamp()))
    key = serialization.load_pem_private_key(
        fixture_bytes(MANIFEST["providers"]["sendgrid"]["private_key_pem_file"]), password=None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }
    return headers, body


def forged_request(provider: str, entry: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """Return the fixture's request altered the way an attacker would, per provider."""
    headers = dict(entry["request"]["headers"])
    body = fixture_bytes(entry["file"])
    if provider == "sendgrid":
        # Another recipient in the signed body.
        return headers, body.replace(b'"email":"', b'"email":"x', 1)
    if provider == "mailgun":
        document = json.loads(body)
        document["signature"]["timestamp"] = str(int(document["signature"]["timestamp"]) + 1)
        return headers, json.dumps(document).encode()
    if provider == "postmark":
        headers["Authorization"] = "Basic " + base64.b64encode(b"pm-webhook-test:forged").decode()
        return headers, body
    document = json.loads(body)
    document["Message"] += " "
    return headers, json.dumps(document).encode()
