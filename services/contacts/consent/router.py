"""Internal routes for consent: change it, read it with its history, and ask whether a send may go out."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from services.contacts.changes import ContactChanges
from services.contacts.consent.service import (
    REQUEST_SOURCES,
    SOURCE_API,
    ConsentRequest,
    load_states,
    load_states_of,
    request_change,
    sendability,
)
from services.contacts.consent.views import ConsentOut, SendabilityBatchOut, SendabilityOut, consent_out
from services.contacts.deps import OutboxDep, Session, SettingsDep
from services.contacts.people.models import Contact
from services.contacts.people.service import get_contact
from services.contacts.publishing import flush_changes
from services.kit import clock
from services.kit.problems import invalid

router = APIRouter(tags=["consent"])


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["subscribed", "unsubscribed"] = Field(description="bounced and complained are set by the platform")
    topic: str | None = Field(default=None, max_length=63, description="A topic such as newsletter; none is overall consent")
    evidence: str | None = Field(
        default=None, max_length=1000, description="How the person gave consent; required to re-subscribe"
    )


@router.put("/contacts/{contact_id}/consent", response_model=ConsentOut)
async def put_consent(
    contact_id: str,
    body: ConsentIn,
    session: Session,
    outbox: OutboxDep,
    settings: SettingsDep,
    source: Annotated[str, Query(description="Who asks: api, unsubscribe_link or unsubscribe_page")] = SOURCE_API,
) -> ConsentOut:
    """Change a contact's consent; re-subscribing needs the person's own action (see consent/service.py)."""
    if source not in REQUEST_SOURCES:
        raise invalid("source", f"the source is one of {', '.join(REQUEST_SOURCES)}")

    await get_contact(session, contact_id)
    changes = ContactChanges()
    request = ConsentRequest(body.status, source, clock.now(), topic=body.topic, evidence=body.evidence)
    await request_change(session, outbox, contact_id, request, changes, default_status=settings.default_consent)
    await flush_changes(session, outbox, changes, settings)
    await session.commit()
    return await consent_out(session, contact_id, settings.default_consent)


@router.get("/contacts/{contact_id}/consent", response_model=ConsentOut)
async def get_consent(contact_id: str, session: Session, settings: SettingsDep) -> ConsentOut:
    """Read a contact's consent and every change of it."""
    await get_contact(session, contact_id)
    return await consent_out(session, contact_id, settings.default_consent)


@router.get("/contacts/{contact_id}/sendability", response_model=SendabilityOut)
async def get_sendability(
    contact_id: str,
    session: Session,
    settings: SettingsDep,
    topic: Annotated[str | None, Query(max_length=63)] = None,
) -> SendabilityOut:
    """Tell the sequencer, at send time, whether a message (of `topic`) may go to this contact."""
    contact = await get_contact(session, contact_id)
    states = await load_states(session, contact_id)
    verdict = sendability(states, topic, settings.default_consent)
    return SendabilityOut(contact_id=contact.id, email=contact.email, timezone=contact.timezone, **verdict)


MAX_SENDABILITY_CONTACTS = 500


class SendabilityQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=MAX_SENDABILITY_CONTACTS, description="The contacts a batch of sends goes to"
    )
    topic: str | None = Field(default=None, max_length=63)


@router.post("/contacts/sendability", response_model=SendabilityBatchOut)
async def post_sendability(body: SendabilityQuery, session: Session, settings: SettingsDep) -> SendabilityBatchOut:
    """Return the sendability of many contacts for a batch of sends, with unknown ids listed in `missing`."""
    ids = sorted(set(body.contact_ids))
    contacts = (await session.exec(select(Contact).where(col(Contact.id).in_(ids)))).all()
    states = await load_states_of(session, [contact.id for contact in contacts])
    verdicts = [
        SendabilityOut(
            contact_id=contact.id,
            email=contact.email,
            timezone=contact.timezone,
            **sendability(states.get(contact.id, {}), body.topic, settings.default_consent),
        )
        for contact in contacts
    ]
    found = {contact.id for contact in contacts}
    return SendabilityBatchOut(contacts=verdicts, missing=[contact_id for contact_id in ids if contact_id not in found])
