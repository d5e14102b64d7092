"""Finding, creating and reading contacts."""

import uuid
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.people.models import Contact
from services.kit import clock
from services.kit.contracts.contacts import ContactSnapshot
from services.kit.problems import NotFound, invalid


def normalise_email(raw: str, *, field: str = "email") -> tuple[str, str]:
    """Return the address as stored (trimmed, domain lower-cased) and its case-insensitive key."""
    try:
        parsed = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        raise invalid(field, f"invalid email address: {error}") from error
    email = f"{parsed.local_part}@{parsed.domain.lower()}"
    return email, email.lower()


def new_contact_id() -> str:
    return uuid.uuid4().hex


async def get_contact(session: AsyncSession, contact_id: str) -> Contact:
    contact = await session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"contact {contact_id} not found", contact_id=contact_id)
    return contact


async def find_by_email(session: AsyncSession, email: str) -> Contact | None:
    _, key = normalise_email(email)
    return (await session.exec(select(Contact).where(Contact.email_key == key))).first()


async def find_or_create_by_email(session: AsyncSession, email: str, **fields: Any) -> tuple[Contact, bool]:
    """Return the contact with this address, creating it (not committed) when there is none."""
    address, key = normalise_email(email)
    existing = (await session.exec(select(Contact).where(Contact.email_key == key))).first()
    if existing is not None:
        return existing, False

    now = clock.now()
    contact = Contact(id=new_contact_id(), email=address, email_key=key, created_at=now, updated_at=now, **fields)
    try:
        async with session.begin_nested():
            session.add(contact)
    except IntegrityError:
        # A concurrent request created the same address first; use that contact.
        existing = (await session.exec(select(Contact).where(Contact.email_key == key))).first()
        if existing is None:
            raise
        return existing, False
    return contact, True


def snapshot(contact: Contact) -> ContactSnapshot:
    return ContactSnapshot(
        id=contact.id,
        email=contact.email,
        first_name=contact.first_name,
        last_name=contact.last_name,
        timezone=contact.timezone,
        attributes=contact.attributes,
        stage=contact.stage,
    )
