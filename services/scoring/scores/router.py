"""Internal routes for reading scores."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit.app import get_session
from services.scoring.history.models import ScoredEvent
from services.scoring.scores.models import ContactScore

router = APIRouter(tags=["scoring"])

Session = Annotated[AsyncSession, Depends(get_session)]


@router.get("/contacts/{contact_id}/score")
async def read_score(contact_id: str, session: Session) -> dict[str, Any]:
    """Return a contact's score per model and how many of its events scoring holds."""
    scores = (await session.exec(select(ContactScore).where(ContactScore.contact_id == contact_id))).all()
    events = (await session.exec(select(ScoredEvent.id).where(ScoredEvent.contact_id == contact_id))).all()
    return {
        "contact_id": contact_id,
        "models": {score.model: {"total": score.total, "fit": score.fit, "engagement": score.engagement} for score in scores},
        "events_held": len(events),
    }
