"""Row locks that serialise changes of one contact."""

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.people.models import Contact


async def lock_contact(session: AsyncSession, contact_id: str) -> str | None:
    """Lock the contact until the commit and return its stored stage (None for an unknown contact).

    Stage and consent changes read the current state, check a rule and write; the lock makes two
    such changes of one contact run one after the other. PostgreSQL locks the row. SQLite only
    locks the whole database, and Python's sqlite3 starts a transaction at the first write, so an
    update that changes nothing takes that lock before the state is read.
    """
    if session.bind.dialect.name == "postgresql":  # type: ignore[union-attr]
        query = select(Contact.stage).where(Contact.id == contact_id).with_for_update()
        return (await session.exec(query)).first()

    await session.exec(update(Contact).where(col(Contact.id) == contact_id).values(id=Contact.id))  # type: ignore[call-overload]
    return (await session.exec(select(Contact.stage).where(Contact.id == contact_id))).first()
