"""Internal routes for a contact's data held by the sequencer."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.app import get_session
from services.sequencer.privacy.service import erase_contact, export_contact

router = APIRouter(tags=["privacy"])

Session = Annotated[AsyncSession, Depends(get_session)]


@router.get("/contacts/{contact_id}/export")
async def export(contact_id: str, session: Session) -> dict[str, Any]:
    """Return everything the sequencer holds about the contact (empty lists when it holds nothing)."""
    return await export_contact(session, contact_id)


@router.delete("/contacts/{contact_id}", status_code=200)
async def erase(contact_id: str, session: Session) -> dict[str, Any]:
    """Erase the contact's data now; the contact.erased event does the same when the contacts service publishes it."""
    counts = await erase_contact(session, contact_id, clock.now())
    await session.commit()
    return {"contact_id": contact_id, "deleted": counts}
