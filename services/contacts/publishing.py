"""The last step of every write: publish changed contacts and bring segment membership up to date."""

from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.attributes.service import load_definitions
from services.contacts.changes import ContactChanges
from services.contacts.people.models import Contact
from services.contacts.people.service import load_snapshots
from services.contacts.segments.membership import refresh_for_changes
from services.contacts.settings import ContactsSettings
from services.kit.consumer import BATCH_CACHE
from services.kit.contracts import contacts as topics
from services.kit.outbox import Outbox

# Key of the batch cache entry that collects the changes of a consumer batch's handlers.
_BATCH_CHANGES = "contact_changes"


async def flush_changes(session: AsyncSession, outbox: Outbox, changes: ContactChanges, settings: ContactsSettings) -> None:
    """Publish `contact.changed` for each changed contact and re-evaluate segments, in the caller's transaction."""
    if changes.empty:
        return

    if changes.companies:
        query = select(Contact.id).where(col(Contact.company_id).in_(list(changes.companies)))
        for contact_id in (await session.exec(query)).all():
            changes.changed(contact_id, ["company"])

    snapshots = await load_snapshots(session, list(changes.fields), settings.default_consent)
    for contact_id in sorted(changes.fields):
        snapshot = snapshots.get(contact_id)
        if snapshot is not None:
            payload = topics.ContactChanged(contact=snapshot, changed_fields=sorted(changes.fields[contact_id]))
            outbox.publish(session, topics.CONTACT_CHANGED, payload)

    definitions = await load_definitions(session)
    await refresh_for_changes(session, outbox, changes, definitions, settings)
    changes.clear()


def batch_changes(session: AsyncSession) -> ContactChanges | None:
    """Return the changes a consumer batch collects for `flush_batch_changes`, or None outside a batch."""
    batch = session.info.get(BATCH_CACHE)
    if batch is None:
        return None
    return batch.setdefault(_BATCH_CHANGES, ContactChanges())  # type: ignore[no-any-return]


async def flush_batch_changes(session: AsyncSession, ctx: dict[str, Any]) -> None:
    """Publish and re-segment, once at the end of a consumer batch, the contacts its events changed."""
    changes = session.info.get(BATCH_CACHE, {}).get(_BATCH_CHANGES)
    if changes is not None:
        await flush_changes(session, ctx["outbox"], changes, ctx["settings"])
