"""Building the API view of contacts, with their company and consent read in bulk."""

from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.consent.models import ConsentState
from services.contacts.consent.service import consent_summary
from services.contacts.people.companies import company_dict
from services.contacts.people.models import Company, Contact
from services.contacts.people.schemas import ContactOut


async def contact_views(session: AsyncSession, contacts: Sequence[Contact], default_consent: str) -> list[ContactOut]:
    ids = [contact.id for contact in contacts]
    company_ids = list({contact.company_id for contact in contacts if contact.company_id})
    companies: dict[str, Company] = {}
    if company_ids:
        companies = {row.id: row for row in (await session.exec(select(Company).where(col(Company.id).in_(company_ids)))).all()}

    states: dict[str, list[ConsentState]] = {}
    if ids:
        for state in (await session.exec(select(ConsentState).where(col(ConsentState.contact_id).in_(ids)))).all():
            states.setdefault(state.contact_id, []).append(state)

    return [
        ContactOut(
            id=contact.id,
            email=contact.email,
            first_name=contact.first_name,
            last_name=contact.last_name,
            timezone=contact.timezone,
            attributes=contact.attributes,
            company=company_dict(companies.get(contact.company_id or "")),  # type: ignore[arg-type]
            stage=contact.stage,
            consent=consent_summary(states.get(contact.id, []), default_consent),  # type: ignore[arg-type]
            scores=contact.scores,
            created_at=contact.created_at,
            updated_at=contact.updated_at,
        )
        for contact in contacts
    ]


async def contact_view(session: AsyncSession, contact: Contact, default_consent: str) -> ContactOut:
    return (await contact_views(session, [contact], default_consent))[0]
