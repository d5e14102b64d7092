"""Consent rules: who may change a contact's subscription, suppression by bounces and complaints.

Statuses are `subscribed`, `unsubscribed`, `bounced` and `complained`, overall and per topic. The
platform sets `bounced` (a hard bounce, or `soft_bounce_limit` soft bounces within
`soft_bounce_window_days`) and `complained` (a spam complaint); either stops all sending. Then only
the person's own action re-subscribes: an API call that records the person's consent as evidence,
or the resubscribe button of the unsubscribe page. An import never changes consent.

Changes are ordered by when they happened: a change whose `occurred_at` is older than the one that
set the current status is stale, is kept in the history as ignored, and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.changes import ContactChanges
from services.contacts.consent.models import OVERALL, ConsentChange, ConsentState
from services.contacts.people.locks import lock_contact
from services.kit import clock
from services.kit.contracts import contacts as topics
from services.kit.logging import get_logger
from services.kit.outbox import Outbox
from services.kit.problems import invalid

log = get_logger(__name__)

SUBSCRIBED = "subscribed"
UNSUBSCRIBED = "unsubscribed"
BOUNCED = "bounced"
COMPLAINED = "complained"

# Sources of a change. An import is deliberately not one of them.
SOURCE_API = "api"
SOURCE_UNSUBSCRIBE_LINK = "unsubscribe_link"
SOURCE_UNSUBSCRIBE_PAGE = "unsubscribe_page"
SOURCE_PROVIDER = "provider"
SOURCE_HARD_BOUNCE = "hard_bounce"
SOURCE_SOFT_BOUNCE = "soft_bounce"
SOURCE_COMPLAINT = "complaint"
# The initial consent of a contact that an import created; it never changes an existing contact.
SOURCE_IMPORT_INITIAL = "import_initial"
REQUEST_SOURCES = (SOURCE_API, SOURCE_UNSUBSCRIBE_LINK, SOURCE_UNSUBSCRIBE_PAGE)

REASON_HARD_BOUNCE = "hard_bounce"
REASON_COMPLAINT = "complaint"
REASON_REPEATED_SOFT = "repeated_soft"

# Platform effects only ever raise the level; lowering it needs the person's own action.
_LEVEL = {SUBSCRIBED: 0, UNSUBSCRIBED: 1, BOUNCED: 2, COMPLAINED: 2}
TOPIC_PATTERN = re.compile(r"[a-z0-9][a-z0-9_\-]{0,62}")


@dataclass(frozen=True)
class ConsentRequest:
    """A requested change: `topic` None is the overall consent."""

    status: str
    source: str
    occurred_at: datetime
    topic: str | None = None
    reason: str | None = None
    evidence: str | None = None
    event_id: str | None = None


def check_topic(topic: str | None, *, field: str = "topic") -> str:
    """Return the stored topic key ("" for overall) or raise a 422 naming `field`."""
    if topic is None:
        return OVERALL

    if not TOPIC_PATTERN.fullmatch(topic):
        raise invalid(field, f"{topic!r} is not a topic name; use lower-case letters, digits, '_' and '-'")

    return topic


def consent_summary(states: Iterable[ConsentState], default_status: str) -> dict[str, Any]:
    """Return a contact's consent as other services copy it: overall status, topics and sendability."""
    overall: ConsentState | None = None
    topic_states = {}
    for state in states:
        if state.topic == OVERALL:
            overall = state
        else:
            topic_states[state.topic] = {
                "status": state.status,
                "source": state.source,
                "changed_at": state.changed_at.isoformat(),
            }

    status = overall.status if overall is not None else default_status
    return {
        "status": status,
        "source": overall.source if overall is not None else None,
        "reason": overall.reason if overall is not None else None,
        "changed_at": overall.changed_at.isoformat() if overall is not None else None,
        "sendable": status == SUBSCRIBED,
        "topics": topic_states,
    }


async def load_states(session: AsyncSession, contact_id: str) -> dict[str, ConsentState]:
    rows = (await session.exec(select(ConsentState).where(ConsentState.contact_id == contact_id))).all()
    return {row.topic: row for row in rows}


async def load_states_of(session: AsyncSession, contact_ids: list[str]) -> dict[str, dict[str, ConsentState]]:
    """Return the consent states of many contacts with one statement, by contact and topic."""
    states: dict[str, dict[str, ConsentState]] = {}
    if not contact_ids:
        return states
    rows = (await session.exec(select(ConsentState).where(col(ConsentState.contact_id).in_(contact_ids)))).all()
    for row in rows:
        states.setdefault(row.contact_id, {})[row.topic] = row
    return states


async def set_initial_consent(
    session: AsyncSession, contact_id: str, hints: dict[str | None, str], *, source: str
) -> None:
    """Record the consent a new contact arrives with (from an import file), as its first history entries."""
    now = clock.now()
    for topic, status in hints.items():
        key = check_topic(topic)
        session.add(ConsentState(contact_id=contact_id, topic=key, status=status, source=source, changed_at=now, recorded_at=now))
        session.add(
            ConsentChange(
                contact_id=contact_id, topic=key, from_status=None, to_status=status, source=source,
                occurred_at=now, recorded_at=now,
            )
        )


async def request_change(
    session: AsyncSession,
    outbox: Outbox,
    contact_id: str,
    request: ConsentRequest,
    changes: ContactChanges,
    *,
    default_status: str,
) -> bool:
    """Apply a change asked for through the API or the unsubscribe page; return whether it changed anything.

    Re-subscribing a contact that unsubscribed, bounced or complained needs the person's own action:
    the unsubscribe page, or an API call with `evidence` of the person's consent (422 naming
    `evidence` without it).
    """
    topic = check_topic(request.topic)
    await lock_contact(session, contact_id)
    states = await load_states(session, contact_id)
    current = _status(states, topic, default_status)
    if request.status == current:
        return False

    if request.status == SUBSCRIBED and request.source != SOURCE_UNSUBSCRIBE_PAGE and not (request.evidence or "").strip():
        raise invalid(
            "evidence",
            f"the contact is {current}; re-subscribing needs the person's own consent, so describe it in "
            "evidence (such as 'confirmed by double opt-in on 2024-06-01')",
            "missing",
        )

    if request.status == UNSUBSCRIBED and _LEVEL[current] > _LEVEL[UNSUBSCRIBED]:
        # A bounced or complained address is already suppressed more strongly than an unsubscribe.
        return False

    _write(session, outbox, contact_id, topic, states.get(topic), current, request)
    changes.changed(contact_id, ["consent"])
    return True


async def apply_platform_change(
    session: AsyncSession,
    outbox: Outbox,
    contact_id: str,
    request: ConsentRequest,
    changes: ContactChanges,
    *,
    default_status: str,
) -> bool:
    """Apply a change the platform observed (unsubscribe link, bounce, complaint) unless it is stale.

    Such a change only ever raises the suppression level, and one older than the current status's
    `changed_at` is ignored. Returns whether it changed anything.
    """
    topic = check_topic(request.topic, field="properties.topic")
    await lock_contact(session, contact_id)
    states = await load_states(session, contact_id)
    state = states.get(topic)
    current = _status(states, topic, default_status)

    if state is not None and state.changed_at > request.occurred_at:
        log.info("consent.stale_change_ignored", contact_id=contact_id, event_id=request.event_id, status=request.status)
        return False

    if _LEVEL[request.status] <= _LEVEL[current]:
        return False

    _write(session, outbox, contact_id, topic, state, current, request)
    changes.changed(contact_id, ["consent"])
    return True


def _status(states: dict[str, ConsentState], topic: str, default_status: str) -> str:
    state = states.get(topic)
    if state is not None:
        return state.status

    return default_status if topic == OVERALL else SUBSCRIBED


def _write(
    session: AsyncSession,
    outbox: Outbox,
    contact_id: str,
    topic: str,
    state: ConsentState | None,
    current: str,
    request: ConsentRequest,
) -> None:
    now = clock.now()
    if state is None:
        state = ConsentState(contact_id=contact_id, topic=topic, status=request.status, source=request.source, changed_at=request.occurred_at, recorded_at=now)
    state.status = request.status
    state.source = request.source
    state.reason = request.reason
    state.changed_at = request.occurred_at
    state.recorded_at = now
    session.add(state)
    session.add(
        ConsentChange(
            contact_id=contact_id,
            topic=topic,
            from_status=current,
            to_status=request.status,
            source=request.source,
            reason=request.reason,
            evidence=request.evidence,
            event_id=request.event_id,
            occurred_at=request.occurred_at,
            recorded_at=now,
        )
    )
    outbox.publish(
        session,
        topics.CONSENT_CHANGED,
        topics.ConsentChanged(
            contact_id=contact_id, topic=topic or None, status=request.status, source=request.source, at=request.occurred_at
        ),
    )
    log.info("consent.changed", contact_id=contact_id, topic=topic or None, status=request.status, source=request.source)


async def consent_history(session: AsyncSession, contact_id: str) -> list[ConsentChange]:
    query = select(ConsentChange).where(ConsentChange.contact_id == contact_id)
    return list((await session.exec(query.order_by(col(ConsentChange.occurred_at), col(ConsentChange.id)))).all())


def sendability(
    states: dict[str, ConsentState], topic: str | None, default_status: str
) -> dict[str, Any]:
    """Return whether a message may be sent now, and why not when it may not."""
    overall = _status(states, OVERALL, default_status)
    overall_state = states.get(OVERALL)
    key = check_topic(topic)
    topic_status = _status(states, key, default_status) if key else None

    reason: str | None = None
    if overall != SUBSCRIBED:
        reason = (overall_state.reason if overall_state is not None else None) or overall
    elif topic_status is not None and topic_status != SUBSCRIBED:
        reason = f"topic_{topic_status}"

    return {"sendable": reason is None, "status": overall, "topic": topic, "topic_status": topic_status, "reason": reason}
