"""Accepting one provider webhook request: verify, store one receipt per new event, hand over.

The webhook library authenticates and maps the request. Each mapped event is inserted under its
unique (provider, provider_event_id), and a conflict is a duplicate that is skipped. The insert
commits before the provider gets its 2xx. The worker then delivers each new receipt to the contacts
service, so the response to the provider never waits for contacts.
"""

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Any

from prometheus_client import Counter
from sqlmodel.ext.asyncio.session import AsyncSession

from services.gateway.delivery.service import SWEEP_GRACE, contacts_step, sns_subscribe_step
from services.gateway.receipts.models import WebhookReceipt
from services.gateway.receipts.timeline import timeline_event, timeline_event_id
from services.gateway.webhooks import (
    CertificateFetcher,
    FailureClass,
    Provider,
    ReplayCache,
    SkipReason,
    WebhookConfig,
    WebhookError,
    WebhookEvent,
    WebhookResult,
    WebhookUnavailable,
    classify_event,
    verify_and_map,
)
from services.gateway.webhooks.events import has_non_finite_number
from services.kit import clock
from services.kit.db import Database, insert_new
from services.kit.logging import get_logger
from services.kit.problems import Problem

log = get_logger(__name__)

WEBHOOK_REQUESTS = Counter(
    "nurture_webhook_requests_total", "Provider webhook requests by outcome", ["provider", "outcome"]
)
# A policy block (blocklisted IP, poor reputation, DMARC) is about our sending, not the address,
# so no contact changes and operators alert on this counter instead.
SENDING_BLOCKS = Counter(
    "nurture_sending_blocks_total", "Failures that receivers reported as a policy block of our sending", ["provider"]
)
# Events that passed the signature check but could not be mapped. Each is kept as a failed receipt.
INVALID_EVENTS = Counter(
    "nurture_webhook_invalid_events_total", "Signed provider events that could not be read, kept as failed receipts", ["provider"]
)
# Each provider's series starts at 0, because Prometheus's increase() cannot see a series' first
# sample, and a series created by the first block would not alert on that block.
for _provider in Provider:
    SENDING_BLOCKS.labels(_provider.value)
    INVALID_EVENTS.labels(_provider.value)
RECEIPTS_TABLE = "webhook_receipt"
# A failed receipt keeps at most this much of a malformed event that is not JSON.
MAX_INVALID_TEXT = 10_000


class WebhookProblem(Problem):
    """A rejected webhook request, with the status that steers the provider's retries."""

    slug = "webhook-rejected"

    def __init__(self, error: WebhookError) -> None:
        headers = dict(error.headers)
        if isinstance(error, WebhookUnavailable):
            headers.setdefault("Retry-After", "30")
        super().__init__(error.reason, headers=headers, code=error.code.value)
        self.status = error.status
        self.title = HTTPStatus(error.status).phrase


@dataclass(frozen=True)
class WebhookVerifier:
    """The configuration, replay cache and certificate fetcher that `verify_and_map` needs."""

    config: WebhookConfig
    replay_cache: ReplayCache
    cert_fetcher: CertificateFetcher


@dataclass(frozen=True)
class Accepted:
    events: int
    stored_ids: list[str]
    duplicates: int
    skipped: int


async def accept_webhook(
    db: Database, verifier: WebhookVerifier, provider: str, headers: Mapping[str, str], body: bytes
) -> Accepted:
    """Verify one webhook request and store its new events; raise `WebhookProblem` when rejected."""
    try:
        result = await verify_and_map(
            provider,
            method="POST",
            headers=headers,
            body=body,
            config=verifier.config,
            replay_cache=verifier.replay_cache,
            cert_fetcher=verifier.cert_fetcher,
            now=clock.now(),
        )
    except WebhookError as error:
        # Only the code and the reason: the body and the signature values stay out of the logs.
        log.warning("webhook.rejected", provider=provider, status=error.status, code=error.code.value, reason=error.reason)
        WEBHOOK_REQUESTS.labels(provider, error.code.value).inc()
        raise WebhookProblem(error) from error

    for skipped in result.skipped:
        if skipped.reason is SkipReason.INVALID:
            log.warning("webhook.event_invalid", provider=provider, index=skipped.index, kind=skipped.kind, detail=skipped.detail)
        else:
            log.info("webhook.event_skipped", provider=provider, index=skipped.index, kind=skipped.kind,
                     reason=skipped.reason.value, detail=skipped.detail)

    rows = _receipts(result, body)
    async with db.session() as session:
        stored_ids = await _insert_new(session, rows)
        kept_invalid = await _insert_new(session, _invalid_receipts(result, body))
    WEBHOOK_REQUESTS.labels(provider, "accepted").inc()
    _count_sending_blocks(result, set(stored_ids))
    INVALID_EVENTS.labels(provider).inc(len(kept_invalid))
    log.info("webhook.accepted", provider=provider, events=len(result.events), stored=len(stored_ids),
             skipped=len(result.skipped))
    return Accepted(
        events=len(result.events),
        stored_ids=stored_ids,
        duplicates=len(rows) - len(stored_ids),
        skipped=len(result.skipped),
    )


def _count_sending_blocks(result: WebhookResult, stored_ids: set[str]) -> None:
    """Count and log each newly stored policy block, so that a provider's retry does not count twice."""
    counted: set[str] = set()
    for event in result.events:
        receipt_id = timeline_event_id(event.provider.value, event.provider_event_id)
        if receipt_id not in stored_ids or receipt_id in counted or classify_event(event) is not FailureClass.BLOCK:
            continue
        counted.add(receipt_id)
        SENDING_BLOCKS.labels(event.provider.value).inc()
        # The diagnostic, which names the blocklist, can contain the recipient's address. So the log
        # carries ids and the status, and the receipt keeps the full text.
        log.warning("webhook.sending_blocked", provider=event.provider.value, provider_event_id=event.provider_event_id,
                    provider_message_id=event.message_id, smtp_status=event.smtp_status)


def _receipts(result: WebhookResult, body: bytes) -> list[dict[str, Any]]:
    now = clock.now()
    rows: dict[str, dict[str, Any]] = {}
    for event in result.events:
        # A batch may repeat an event; the first occurrence stands for both.
        rows.setdefault(event.provider_event_id, _event_receipt(event, now))
    if result.action == "confirm_subscription" and result.subscribe_url:
        row = _subscription_receipt(result.provider.value, result.subscribe_url, body, now)
        rows.setdefault(row["provider_event_id"], row)
    return list(rows.values())


def _invalid_receipts(result: WebhookResult, body: bytes) -> list[dict[str, Any]]:
    """Return a failed receipt per signed event that could not be mapped, so that none is lost unseen.

    A provider that sends the same request again gets the same receipt ids, so its retries are
    duplicates. The receipt keeps the event (or the whole body when the event cannot be singled
    out) and the reason, and nothing delivers it.
    """
    invalid = [skipped for skipped in result.skipped if skipped.reason is SkipReason.INVALID]
    if not invalid:
        return []

    digest = hashlib.sha256(body).hexdigest()[:32]
    try:
        payload: Any = json.loads(body)
    except ValueError:
        payload = {"text": body[:MAX_INVALID_TEXT].decode("utf-8", errors="replace")}
    now = clock.now()
    rows = []
    for skipped in invalid:
        element = payload
        if skipped.index is not None and isinstance(payload, list) and 0 <= skipped.index < len(payload):
            element = payload[skipped.index]
        provider_event_id = f"invalid:{digest}:{skipped.index if skipped.index is not None else '-'}"
        rows.append({
            "id": timeline_event_id(result.provider.value, provider_event_id),
            "provider": result.provider.value,
            "provider_event_id": provider_event_id,
            "kind": "invalid_event",
            "event_type": _storable_text(skipped.kind or "", 32) or None,
            "received_at": now,
            "raw": _storable_raw(element),
            "state": "failed",
            "steps": [],
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": _storable_text(f"invalid event: {skipped.detail}", 1000),
        })
    return rows


def _storable_text(text: str, max_length: int) -> str:
    """Return `text` without NUL characters, lone surrogates as "?", cut to `max_length` characters.

    A failed receipt keeps provider text, which may contain the very characters that made the
    event invalid. Stored as is, they would fail the insert and with it the whole request.
    """
    cleaned = text.replace("\x00", "").encode("utf-8", errors="replace").decode("utf-8")
    return cleaned[:max_length]


def _storable_raw(element: object) -> dict[str, Any]:
    """Return the event for the JSON column `raw`, as text when it contains NaN or Infinity.

    PostgreSQL's json type rejects NaN and Infinity, which Python's json module reads.
    """
    if has_non_finite_number(element):
        return {"text": json.dumps(element)[:MAX_INVALID_TEXT]}
    return element if isinstance(element, dict) else {"value": element}


def _event_receipt(event: WebhookEvent, now: datetime) -> dict[str, Any]:
    return {
        "id": timeline_event_id(event.provider.value, event.provider_event_id),
        "provider": event.provider.value,
        "provider_event_id": event.provider_event_id,
        "kind": "event",
        "event_type": event.type.value,
        "email": event.email,
        "provider_message_id": event.message_id,
        "occurred_at": event.occurred_at,
        "received_at": now,
        "raw": event.raw,
        **_pending(now, [contacts_step("POST", "/events", timeline_event(event, now))]),
    }


def _subscription_receipt(provider: str, subscribe_url: str, body: bytes, now: datetime) -> dict[str, Any]:
    # The library verified the envelope already, so its MessageId can be read as is.
    envelope = json.loads(body)
    provider_event_id = f"subscription:{envelope['MessageId']}"
    return {
        "id": timeline_event_id(provider, provider_event_id),
        "provider": provider,
        "provider_event_id": provider_event_id,
        "kind": "sns_subscription",
        "received_at": now,
        "raw": {"TopicArn": envelope.get("TopicArn"), "MessageId": envelope["MessageId"]},
        **_pending(now, [sns_subscribe_step(subscribe_url)]),
    }


def _pending(now: datetime, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"state": "pending", "steps": steps, "attempts": 0, "next_attempt_at": now + SWEEP_GRACE}


async def _insert_new(session: AsyncSession, rows: list[dict[str, Any]]) -> list[str]:
    """Insert the rows whose key is new and return their ids; existing keys are left alone."""
    if not rows:
        return []
    table = WebhookReceipt.__table__  # type: ignore[attr-defined]
    stored = [receipt_id for (receipt_id,) in await insert_new(session, table, rows, table.c.id)]
    await session.commit()
    return stored
