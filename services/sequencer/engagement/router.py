"""Internal routes for sent messages, their events, and the sequence report."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.app import get_session
from services.kit.pagination import Page
from services.kit.problems import NotFound
from services.sequencer.engagement.recording import find_message, message_events
from services.sequencer.engagement.report import SequenceReport, sequence_report

router = APIRouter(tags=["messages"])

Session = Annotated[AsyncSession, Depends(get_session)]


class MessageOut(BaseModel):
    """A sent message: its send log state, its delivery and engagement status, and when each happened."""

    message_id: str
    contact_id: str
    sequence_id: str
    step_id: str
    enrolment_id: str
    state: str
    attempts: int
    status: str
    smtp_code: int | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    failed_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    bounced_at: datetime | None
    complained_at: datetime | None
    unsubscribed_at: datetime | None


class MessageEventOut(BaseModel):
    event_id: str
    type: str
    occurred_at: datetime
    received_at: datetime
    verdict: str | None
    reasons: list[str]
    properties: dict[str, Any]


@router.get("/messages/{message_id}", response_model=MessageOut)
async def read_message(message_id: str, session: Session) -> MessageOut:
    """Read a message by its Message-ID, with or without the angle brackets."""
    message = await find_message(session, message_id)
    if message is None:
        raise NotFound(f"no message has Message-ID {message_id}")
    return MessageOut.model_validate(message, from_attributes=True)


@router.get("/messages/{message_id}/events", response_model=Page[MessageEventOut])
async def read_message_events(message_id: str, session: Session) -> Page[MessageEventOut]:
    """List a message's events, oldest first (a message has a few dozen events at most)."""
    message = await find_message(session, message_id)
    if message is None:
        raise NotFound(f"no message has Message-ID {message_id}")
    events = await message_events(session, message.message_id)
    return Page[MessageEventOut](items=[MessageEventOut.model_validate(event, from_attributes=True) for event in events])


@router.get("/sequences/{sequence_id}/report", response_model=SequenceReport)
async def read_report(sequence_id: str, session: Session) -> SequenceReport:
    """Report a sequence per email step: sends, deliveries, opens, clicks, rates, bounces, goals."""
    return await sequence_report(session, sequence_id, clock.now())
