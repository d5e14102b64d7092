"""Finding, creating and changing contacts, and the snapshot other services copy."""

import uuid
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.attributes.types import AttributeDefinition, coerce_value, require_definition
from services.contacts.changes import ContactChanges
from services.contacts.consent.models import ConsentState
from services.contacts.consent.service import consent_summary
from services.contacts.people.companies import company_dict, link_company
from services.contacts.people.email import NormalisedEmail, normalise_email
from services.contacts.people.models import Company, Contact
from services.contacts.people.profile import validate_company, validate_contact_timezone, validate_text
from services.contacts.stages.models import StageChange
from services.kit import clock
from services.kit.contracts.contacts import ContactSnapshot
from services.kit.db import savepoint
from services.kit.problems import Conflict, NotFound

INITIAL_STAGE = "subscriber"


def new_contact_id() -> str:
    return uuid.uuid4().hex


async def get_contact(session: AsyncSession, contact_id: str) -> Contact:
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"contact {contact_id} not found", contact_id=contact_id)
    return contact


async def find_by_email(session: AsyncSession, email: str) -> Contact | None:
    key = normalise_email(email).match_key
    return (await session.exec(select(Contact).where(Contact.email_key == key))).first()


async def find_by_keys(session: AsyncSession, keys: Collection[str]) -> dict[str, Contact]:
    """Return the contacts whose match keys are in `keys`, by key."""
    if not keys:
        return {}

    rows = (await session.exec(select(Contact).where(col(Contact.email_key).in_(list(keys))))).all()
    return {row.email_key: row for row in rows}


async def create_contact(
    session: AsyncSession,
    email: str | NormalisedEmail,
    changes: ContactChanges,
    *,
    actor: str,
    stage: str = INITIAL_STAGE,
    check_now: bool = True,
) -> Contact:
    """Create a contact (not committed) with its first stage-history entry.

    With `check_now` the contact is flushed at once in a savepoint, and an address that belongs to
    a contact already raises Conflict naming the existing id. Batch writers pass False to save that
    round trip per contact; a clash then surfaces as IntegrityError at the commit.
    """
    address = email if isinstance(email, NormalisedEmail) else normalise_email(email)
    now = clock.now()
    contact = Contact(
        id=new_contact_id(),
        email=address.address,
        email_key=address.match_key,
        stage=stage,
        stage_changed_at=now,
        created_at=now,
        updated_at=now,
    )
    if not check_now:
        session.add(contact)
        _record_creation(session, contact, changes, actor, now)
        return contact

    try:
        async with savepoint(session):
            session.add(contact)
    except IntegrityError:
        existing = (await session.exec(select(Contact).where(Contact.email_key == address.match_key))).first()
        if existing is None:
            raise
        raise _exists(existing) from None

    _record_creation(session, contact, changes, actor, now)
    return contact


def _record_creation(session: AsyncSession, contact: Contact, changes: ContactChanges, actor: str, at: datetime) -> None:
    session.add(StageChange(contact_id=contact.id, from_stage=None, to_stage=contact.stage, kind="created", actor=actor, at=at))
    changes.created(contact.id)


def _exists(contact: Contact) -> Conflict:
    return Conflict(f"a contact with this email exists: {contact.id}", existing_id=contact.id)


async def apply_profile(
    session: AsyncSession,
    contact: Contact,
    values: Mapping[str, Any],
    definitions: Mapping[str, AttributeDefinition],
    changes: ContactChanges,
) -> list[str]:
    """Apply the given profile fields to `contact` and return the names of those that changed.

    `values` holds only the fields the caller sent. Attributes are merged (null clears one); a
    company object links the contact to that company and null unlinks it. Invalid values raise
    FieldValueError naming the field; a new email that belongs to another contact raises Conflict.
    """
    changed: list[str] = []
    if "email" in values:
        changed += await _apply_email(session, contact, values["email"])

    for field in ("first_name", "last_name"):
        if field in values:
            changed += _set(contact, field, validate_text(values[field], field=field))

    if "timezone" in values:
        changed += _set(contact, "timezone", validate_contact_timezone(values["timezone"]))

    if "attributes" in values:
        changed += apply_attributes(contact, values["attributes"] or {}, definitions)

    if "company" in values:
        changed += await _apply_company(session, contact, values["company"], changes)

    if changed:
        contact.updated_at = clock.now()
        session.add(contact)
        changes.changed(contact.id, changed)
    return changed


def apply_attributes(
    contact: Contact, values: Mapping[str, Any], definitions: Mapping[str, AttributeDefinition]
) -> list[str]:
    """Merge typed attribute values into the contact; raises AttributeValueError naming the attribute."""
    merged = dict(contact.attributes)
    changed = []
    for name, raw in values.items():
        value = coerce_value(require_definition(definitions, name), raw)
        if value is None:
            if name in merged:
                del merged[name]
                changed.append(f"attributes.{name}")
        elif merged.get(name) != value:
            merged[name] = value
            changed.append(f"attributes.{name}")

    if changed:
        contact.attributes = merged
    return changed


async def _apply_email(session: AsyncSession, contact: Contact, raw: object) -> list[str]:
    address = normalise_email(raw)
    if address.match_key != contact.email_key:
        other = (await session.exec(select(Contact).where(Contact.email_key == address.match_key))).first()
        if other is not None:
            raise _exists(other)
        contact.email_key = address.match_key

    return _set(contact, "email", address.address)


async def _apply_company(session: AsyncSession, contact: Contact, raw: object, changes: ContactChanges) -> list[str]:
    if raw is None:
        return _set(contact, "company_id", None, name="company")

    values = validate_company(raw)
    if not values:
        return []

    before = contact.company_id
    company, shared_change = await link_company(session, contact, values)
    if shared_change:
        changes.company_changed(company.id)
    return ["company"] if shared_change or before != contact.company_id else []


def _set(contact: Contact, field: str, value: object, *, name: str | None = None) -> list[str]:
    if getattr(contact, field) == value:
        return []

    setattr(contact, field, value)
    return [name or field]


async def load_snapshots(session: AsyncSession, contact_ids: Collection[str], default_consent: str) -> dict[str, ContactSnapshot]:
    """Return the snapshot of each existing contact in `contact_ids`, reading companies and consent in bulk."""
    if not contact_ids:
        return {}

    ids = list(contact_ids)
    contacts = (await session.exec(select(Contact).where(col(Contact.id).in_(ids)))).all()
    company_ids = {contact.company_id for contact in contacts if contact.company_id}
    companies = {}
    if company_ids:
        rows = (await session.exec(select(Company).where(col(Company.id).in_(list(company_ids))))).all()
        companies = {row.id: row for row in rows}
    states: dict[str, list[ConsentState]] = {}
    for state in (await session.exec(select(ConsentState).where(col(ConsentState.contact_id).in_(ids)))).all():
        states.setdefault(state.contact_id, []).append(state)

    return {
        contact.id: snapshot(
            contact,
            companies.get(contact.company_id) if contact.company_id else None,
            consent_summary(states.get(contact.id, []), default_consent),
        )
        for contact in contacts
    }


def snapshot(contact: Contact, company: Company | None, consent: dict[str, Any]) -> ContactSnapshot:
    return ContactSnapshot(
        id=contact.id,
        email=contact.email,
        first_name=contact.first_name,
        last_name=contact.last_name,
        timezone=contact.timezone,
        attributes=contact.attributes,
        company=company_dict(company),
        stage=contact.stage,
        consent=consent,
    )
