"""Verifying tracking tokens, classifying hits and storing them for delivery to contacts.

Opens and clicks are classified with the engagement classifier together with the other recent hits
of the same message (kept in Redis for the classifier's burst window), because a link scanner shows
only as a burst of several links. The verdict and the inputs it came from go on the timeline event,
so later readers can classify again.
"""

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.dialects import postgresql, sqlite

from services.gateway.delivery.service import SWEEP_GRACE, contacts_step
from services.gateway.tracking.models import TrackingHit
from services.kit import clock
from services.kit.db import Database
from services.kit.logging import get_logger
from services.kit.problems import NotFound
from services.kit.tokens import InvalidToken, TokenPurpose, TokenSigner, TrackingClaims
from services.sequencer.engagement.classifier import (
    DEFAULT_RULES,
    BotRules,
    ClassifiedHit,
    TrackingHit as Hit,
    classify_hits,
)

log = get_logger(__name__)

TRACKING_TABLE = "tracking_hit"
UnsubscribeMethod = Literal["one_click", "form"]
_RECENT_HITS_KEPT = 50


class LinkNotFound(NotFound):
    """A tracking or unsubscribe token that is malformed, tampered with or of another purpose."""

    def __init__(self) -> None:
        super().__init__("this link is invalid; use the link from the email as it was sent")


@dataclass(frozen=True)
class Visitor:
    """The client that fetched a tracking URL, as far as the request shows."""

    user_agent: str | None
    ip: str | None


def verify_token(signer: TokenSigner, token: str, purpose: TokenPurpose) -> TrackingClaims:
    """Return the claims of a valid token, or raise a 404 problem that reveals nothing more."""
    try:
        return signer.verify(token, purpose)
    except InvalidToken as error:
        log.info("tracking.invalid_token", purpose=purpose.value, error=str(error))
        raise LinkNotFound() from error


class HitClassifier:
    """Classifies a hit together with the recent hits of the same message."""

    def __init__(self, redis: Redis, namespace: str, rules: BotRules = DEFAULT_RULES) -> None:
        self.redis = redis
        self.namespace = namespace
        self.rules = rules

    async def classify(self, message_id: str, hit: Hit) -> ClassifiedHit:
        recent = await self._remember(message_id, hit)
        return classify_hits([*recent, hit], delivered_at=None, rules=self.rules)[-1]

    async def _remember(self, message_id: str, hit: Hit) -> list[Hit]:
        key = f"{self.namespace}:gateway:hits:{hashlib.sha256(message_id.encode()).hexdigest()[:32]}"
        ttl_s = max(1, int(self.rules.burst_window.total_seconds()) * 3)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.lrange(key, 0, -1)
                pipe.rpush(key, json.dumps(_hit_document(hit)))
                pipe.ltrim(key, -_RECENT_HITS_KEPT, -1)
                pipe.expire(key, ttl_s)
                stored, *_ = await pipe.execute()
        except (RedisError, OSError) as error:
            # Without the recent hits the classifier still applies every rule but the burst rule.
            log.warning("tracking.recent_hits_unavailable", error=repr(error))
            return []
        return [_hit_from_document(json.loads(item)) for item in stored]


def _hit_document(hit: Hit) -> dict[str, Any]:
    return {"kind": hit.kind, "at": hit.occurred_at.isoformat(), "ua": hit.user_agent, "ip": hit.ip, "url": hit.url}


def _hit_from_document(document: dict[str, Any]) -> Hit:
    return Hit(
        kind=document["kind"],
        occurred_at=datetime.fromisoformat(document["at"]),
        user_agent=document.get("ua"),
        ip=document.get("ip"),
        url=document.get("url"),
    )


async def record_engagement(
    db: Database, claims: TrackingClaims, classified: ClassifiedHit, visitor: Visitor
) -> str:
    """Store an open or click for delivery to contacts; return the row id."""
    hit = classified.hit
    is_open = hit.kind == "open"
    row_id = f"trk_{uuid.uuid4().hex}"
    properties: dict[str, Any] = {
        "message_id": claims.message_id,
        "contact_id": claims.contact_id,
        "user_agent": visitor.user_agent,
        "ip": visitor.ip,
        "url": hit.url,
        "machine" if is_open else "bot": not classified.human,
        "classification_reasons": list(classified.reasons),
        "source": "tracking_pixel" if is_open else "tracked_link",
    }
    event = {
        "id": row_id,
        "contact_id": claims.contact_id,
        "type": "email_opened" if is_open else "email_clicked",
        "occurred_at": hit.occurred_at.isoformat(),
        "properties": {name: value for name, value in properties.items() if value is not None},
    }
    row = _row(row_id, hit.kind, claims, hit.occurred_at, visitor, classified, [contacts_step("POST", "/events", event)])
    async with db.session() as session:
        session.add(TrackingHit(**row))
        await session.commit()
    return row_id


async def record_unsubscribe(db: Database, claims: TrackingClaims, visitor: Visitor, method: UnsubscribeMethod) -> str:
    """Store the unsubscribe of the token's contact once per message; return the row id.

    The contact comes from the verified token only, so a link can never unsubscribe anyone else.
    The contacts service sets the consent from the `unsubscribed` timeline event (source
    `unsubscribe_link`) in the same transaction that stores the event, once per event id.
    """
    digest = hashlib.sha256(f"{claims.message_id}\x00{claims.contact_id}".encode()).hexdigest()
    row_id = f"unsub_{digest[:40]}"
    now = clock.now()
    event = {
        "id": row_id,
        "contact_id": claims.contact_id,
        "type": "unsubscribed",
        "occurred_at": now.isoformat(),
        "properties": {"message_id": claims.message_id, "source": "unsubscribe_link", "method": method},
    }
    row = _row(row_id, "unsubscribe", claims, now, visitor, None, [contacts_step("POST", "/events", event)])

    async with db.session() as session:
        dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
        await session.exec(dialect.insert(TrackingHit).values(row).on_conflict_do_nothing())  # type: ignore[call-overload]
        await session.commit()
    return row_id


def _row(
    row_id: str,
    kind: str,
    claims: TrackingClaims,
    occurred_at: datetime,
    visitor: Visitor,
    classified: ClassifiedHit | None,
    steps: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "id": row_id,
        "kind": kind,
        "message_id": claims.message_id,
        "contact_id": claims.contact_id,
        "occurred_at": occurred_at,
        "user_agent": visitor.user_agent,
        "ip": visitor.ip,
        "url": classified.hit.url if classified else None,
        "verdict": classified.verdict.value if classified else "human",
        "reasons": list(classified.reasons) if classified else [],
        "state": "pending",
        "steps": steps,
        "attempts": 0,
        "next_attempt_at": clock.now() + SWEEP_GRACE,
    }


def visitor_of(user_agent: str | None, ip: str | None) -> Visitor:
    """Return the visitor with the user agent cut to what the table keeps."""
    return Visitor(user_agent=user_agent[:1000] if user_agent else None, ip=ip[:64] if ip else None)


def hit_now(kind: Literal["open", "click"], visitor: Visitor, url: str | None = None) -> Hit:
    return Hit(kind=kind, occurred_at=clock.now(), user_agent=visitor.user_agent, ip=visitor.ip, url=url)
