"""Linking contacts to companies: contacts with the same domain share one company row."""

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.people.models import Company, Contact
from services.kit import clock
from services.kit.db import savepoint

COMPANY_VALUE_FIELDS = ("name", "size", "industry")


def company_dict(company: Company | None) -> dict[str, Any] | None:
    if company is None:
        return None

    return {
        "id": company.id,
        "domain": company.domain,
        "name": company.name,
        "size": company.size,
        "industry": company.industry,
    }


async def link_company(session: AsyncSession, contact: Contact, values: Mapping[str, Any]) -> tuple[Company, bool]:
    """Link `contact` to the company that `values` (validated company fields) describe.

    With a domain, the contact joins the company of that domain, created when new. Without one, the
    values update the company the contact is already linked to, or a new company is created. Given
    name, size and industry overwrite the company's; missing ones stay. Returns the company and
    whether its own fields changed, which changes every contact linked to it.
    """
    domain = values.get("domain")
    company: Company | None
    if domain is not None:
        company = await _company_by_domain(session, domain)
    elif contact.company_id is not None:
        company = await session.get(Company, contact.company_id)
    else:
        company = None

    created = company is None
    if company is None:
        company = await _create_company(session, domain)

    changed = False
    for field in COMPANY_VALUE_FIELDS:
        value = values.get(field)
        if value is not None and getattr(company, field) != value:
            setattr(company, field, value)
            changed = True

    if changed:
        company.updated_at = clock.now()
        session.add(company)
    contact.company_id = company.id
    return company, changed and not created


async def _company_by_domain(session: AsyncSession, domain: str) -> Company | None:
    return (await session.exec(select(Company).where(Company.domain == domain))).first()


async def _create_company(session: AsyncSession, domain: str | None) -> Company:
    now = clock.now()
    company = Company(id=uuid.uuid4().hex, domain=domain, created_at=now, updated_at=now)
    try:
        async with savepoint(session):
            session.add(company)
    except IntegrityError:
        # Another request created the company of this domain first; join it.
        existing = await _company_by_domain(session, domain) if domain is not None else None
        if existing is None:
            raise
        return existing
    return company
