"""Internal routes for erasure and export of one person's data."""

from typing import Any

from fastapi import APIRouter, Request, Response

from services.contacts.deps import OutboxDep, Session, SettingsDep
from services.contacts.privacy.service import erase_contact, export_contact

router = APIRouter(tags=["contacts"])


@router.delete("/contacts/{contact_id}", status_code=204)
async def erase(contact_id: str, session: Session, outbox: OutboxDep, settings: SettingsDep) -> Response:
    """Erase the person's data here and tell the other services to erase theirs; keep an anonymous tombstone."""
    await erase_contact(session, outbox, contact_id, settings)
    await session.commit()
    return Response(status_code=204)


@router.get("/contacts/{contact_id}/export")
async def export(contact_id: str, request: Request, session: Session, settings: SettingsDep) -> dict[str, Any]:
    """Return everything held about the person in every service, or 503 when a service's part is missing."""
    return await export_contact(session, contact_id, request.app.state.clients, settings.default_consent)
