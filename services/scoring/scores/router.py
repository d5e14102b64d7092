"""Internal routes for reading a contact's scores and exporting what scoring stores about the person."""

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.app import get_session
from services.scoring.history.models import ContactFacts, ScoredEvent
from services.scoring.history.service import event_document
from services.scoring.schemas import ContactExport, ContactScoreOut, FiringOut
from services.scoring.scores.report import contact_score_report
from services.scoring.thresholds.models import ThresholdFiring, ThresholdState

router = APIRouter(tags=["scores"])

Session = Annotated[AsyncSession, Depends(get_session)]


@router.get("/contacts/{contact_id}/score", response_model=ContactScoreOut)
async def read_score(contact_id: str, session: Session) -> ContactScoreOut:
    """Return the contact's score per model, decayed to now, with the ledger explaining every point."""
    return await contact_score_report(session, contact_id, clock.now())


@router.get("/contacts/{contact_id}/export", response_model=ContactExport)
async def export_contact(contact_id: str, session: Session) -> ContactExport:
    """Return everything scoring stores about the contact: facts, events, scores, ledger and triggers."""
    facts = await session.get(ContactFacts, contact_id)
    events = (await session.exec(select(ScoredEvent).where(ScoredEvent.contact_id == contact_id).order_by(ScoredEvent.occurred_at))).all()
    states = (await session.exec(select(ThresholdState).where(ThresholdState.contact_id == contact_id))).all()
    firings = (await session.exec(select(ThresholdFiring).where(ThresholdFiring.contact_id == contact_id).order_by(ThresholdFiring.id))).all()
    return ContactExport(
        contact_id=contact_id,
        facts=facts.model_dump(mode="json", exclude={"revision"}) if facts is not None else None,
        events=[{**event_document(event), "occurred_at": event.occurred_at.isoformat()} for event in events],
        scores=await contact_score_report(session, contact_id, clock.now()),
        threshold_states=[state.model_dump(mode="json") for state in states],
        firings=[FiringOut.model_validate(firing, from_attributes=True) for firing in firings],
    )
