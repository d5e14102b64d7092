"""Erasing a person's data from the contacts database, and gathering everything held about them.

Erasure deletes the contact and every row that names it in one transaction. Those rows are its
timeline events, consent state and history, stage history, segment memberships, a company no other
contact works at, and outbox rows whose event mentions the contact's id or address. Where a segment
filter quotes the address, the address is replaced. What remains is an anonymous
tombstone (a fresh random id, the stage reached and the erasure time) so counts per stage stay
right. The erasure is then published as `contact.erased`, whose outbox row carries the contact id
only until the relay has delivered it to scoring and the sequencer, which delete their own data.
"""

import json
import re
import uuid
from typing import Any

from sqlalchemy import Text, cast, delete, func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.attributes.service import load_definitions
from services.contacts.consent.models import ConsentChange, ConsentState
from services.contacts.consent.views import consent_out
from services.contacts.db import OutboxMessage
from services.contacts.people.models import Company, Contact
from services.contacts.people.service import get_contact
from services.contacts.people.views import contact_view
from services.contacts.privacy.models import ContactTombstone
from services.contacts.segments.membership import refresh_segment
from services.contacts.segments.models import Segment, SegmentMembership
from services.contacts.settings import ContactsSettings
from services.contacts.stages.models import StageChange
from services.contacts.timeline.models import TimelineEvent
from services.kit import clock
from services.kit.contracts import contacts as topics
from services.kit.http import ServiceClient, UpstreamProblem
from services.kit.logging import get_logger
from services.kit.outbox import Outbox
from services.kit.problems import Problem, Unavailable

log = get_logger(__name__)

# Services that keep their own data about a contact and serve it at GET /contacts/{id}/export.
EXPORTING_SERVICES = ("scoring", "sequencer")
_PERSONAL_TABLES = (TimelineEvent, ConsentState, ConsentChange, StageChange, SegmentMembership)
# Replacement of an erased address in segment filters; it matches no valid address.
ERASED_TEXT = "[erased]"


async def erase_contact(session: AsyncSession, outbox: Outbox, contact_id: str, settings: ContactsSettings) -> ContactTombstone:
    """Delete everything about the contact, leave a tombstone and publish `contact.erased` (not committed)."""
    contact = await get_contact(session, contact_id)
    tombstone = ContactTombstone(id=uuid.uuid4().hex, stage=contact.stage, erased_at=clock.now())
    session.add(tombstone)

    for table in _PERSONAL_TABLES:
        await session.exec(delete(table).where(table.contact_id == contact_id))  # type: ignore[attr-defined]
    await _delete_outbox_rows(session, contact)
    company_id = contact.company_id
    await session.delete(contact)
    await session.flush()
    if company_id is not None:
        await _delete_unused_company(session, company_id)
    await _scrub_segment_filters(session, outbox, contact, settings)

    outbox.publish(session, topics.CONTACT_ERASED, topics.ContactErased(contact_id=contact_id))
    log.info("contact.erased", tombstone_id=tombstone.id)
    return tombstone


async def _delete_outbox_rows(session: AsyncSession, contact: Contact) -> None:
    # JSON text escapes non-ASCII characters, so the address is searched as typed and as escaped.
    needles = {contact.id, contact.email, json.dumps(contact.email)[1:-1]}
    envelope_text = cast(OutboxMessage.envelope, Text)
    matches = or_(*(envelope_text.contains(needle, autoescape=True) for needle in needles))
    await session.exec(delete(OutboxMessage).where(matches))  # type: ignore[call-overload]


async def _scrub_segment_filters(session: AsyncSession, outbox: Outbox, contact: Contact, settings: ContactsSettings) -> None:
    """Replace the address in segment filters that quote it (such as `email eq ...`) by ERASED_TEXT."""
    filter_text = func.lower(cast(Segment.filter, Text))
    needles = {contact.email_key, json.dumps(contact.email_key)[1:-1]}
    query = select(Segment).where(or_(*(filter_text.contains(needle, autoescape=True) for needle in needles)))
    segments = list((await session.exec(query)).all())
    if not segments:
        return

    pattern = re.compile(re.escape(contact.email), re.IGNORECASE)
    definitions = await load_definitions(session)
    for segment in segments:
        segment.filter = _replace_strings(segment.filter, pattern)
        segment.updated_at = clock.now()
        session.add(segment)
        await refresh_segment(session, outbox, segment, definitions, settings)
        log.info("segment.filter_scrubbed", segment_id=segment.id)


def _replace_strings(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(ERASED_TEXT, value)
    if isinstance(value, list):
        return [_replace_strings(item, pattern) for item in value]
    if isinstance(value, dict):
        return {key: _replace_strings(item, pattern) for key, item in value.items()}
    return value


async def _delete_unused_company(session: AsyncSession, company_id: str) -> None:
    still_used = (await session.exec(select(Contact.id).where(Contact.company_id == company_id).limit(1))).first()
    if still_used is None:
        await session.exec(delete(Company).where(col(Company.id) == company_id))  # type: ignore[call-overload]


async def export_contact(
    session: AsyncSession, contact_id: str, clients: dict[str, ServiceClient], default_consent: str
) -> dict[str, Any]:
    """Return everything the platform stores about the contact, or raise 503 when a service cannot be read.

    An export is never partial: if scoring or the sequencer cannot be read, the whole request fails.
    """
    contact = await get_contact(session, contact_id)
    document: dict[str, Any] = {
        "generated_at": clock.now().isoformat(),
        "contact": (await contact_view(session, contact, default_consent)).model_dump(mode="json"),
        "consent": (await consent_out(session, contact_id, default_consent)).model_dump(mode="json"),
        "timeline": await _rows(session, TimelineEvent, contact_id, TimelineEvent.occurred_at),
        "stage_history": await _rows(session, StageChange, contact_id, StageChange.id),
        "segments": await _segments(session, contact_id),
    }
    for service in EXPORTING_SERVICES:
        document[service] = await _export_from(clients[service], contact_id)
    return document


async def _rows(session: AsyncSession, model: Any, contact_id: str, order: Any) -> list[dict[str, Any]]:
    rows = (await session.exec(select(model).where(model.contact_id == contact_id).order_by(order))).all()
    return [row.model_dump(mode="json") for row in rows]


async def _segments(session: AsyncSession, contact_id: str) -> list[dict[str, Any]]:
    query = (
        select(Segment.id, Segment.name, SegmentMembership.entered_at)
        .join(SegmentMembership, col(SegmentMembership.segment_id) == col(Segment.id))
        .where(SegmentMembership.contact_id == contact_id)
    )
    return [
        {"segment_id": segment_id, "name": name, "entered_at": entered_at.isoformat()}
        for segment_id, name, entered_at in (await session.exec(query)).all()
    ]


async def _export_from(client: ServiceClient, contact_id: str) -> Any:
    try:
        return await client.request("GET", f"/contacts/{contact_id}/export")
    except UpstreamProblem as problem:
        if problem.status == 404 and str(problem.body.get("type", "")).endswith("/not-found"):
            # The service responded that it stores nothing about this contact.
            return None
        raise _incomplete(client.service, f"it responded with status {problem.status}") from problem
    except Unavailable as problem:
        raise _incomplete(client.service, "it cannot be reached") from problem
    except Problem as problem:
        raise _incomplete(client.service, f"it responded with status {problem.status}") from problem


def _incomplete(service: str, why: str) -> Unavailable:
    return Unavailable(f"the export is incomplete because the {service} service's part could not be read: {why}; retry shortly", service=service)
