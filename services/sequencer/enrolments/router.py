"""Internal routes for enrolments: enrol by hand, list a sequence's enrolments, read one with its steps."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import and_, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.app import get_session
from services.kit.pagination import CursorQuery, LimitQuery, Page, decode_time_cursor, encode_cursor
from services.kit.problems import NotFound
from services.sequencer.enrolments.models import Enrolment, StepRun
from services.sequencer.enrolments.service import enrol
from services.sequencer.enrolments.wakeups import attach_queue
from services.sequencer.facts.service import ensure_facts
from services.sequencer.sequences.store import get_sequence, load_definition

router = APIRouter(tags=["enrollments"])

Session = Annotated[AsyncSession, Depends(get_session)]


class EnrollmentIn(BaseModel):
    contact_id: str = Field(min_length=1, max_length=64)


class StepRunOut(BaseModel):
    step_id: str
    kind: str
    state: str
    started_at: datetime
    due_at: datetime
    outcome: str | None
    finished_at: datetime | None


class EnrollmentOut(BaseModel):
    id: str
    sequence_id: str
    version: int
    contact_id: str
    entry: int
    state: str
    exit_reason: str | None
    current_step_id: str | None
    trigger: str
    enrolled_at: datetime
    finished_at: datetime | None
    steps: list[StepRunOut] = []


async def _with_steps(session: AsyncSession, enrolment: Enrolment) -> EnrollmentOut:
    query = select(StepRun).where(StepRun.enrolment_id == enrolment.id).order_by(col(StepRun.started_at), col(StepRun.id))
    runs = (await session.exec(query)).all()
    out = EnrollmentOut.model_validate(enrolment, from_attributes=True)
    out.steps = [StepRunOut.model_validate(run, from_attributes=True) for run in runs]
    return out


@router.post("/sequences/{sequence_id}/enrollments", status_code=201, response_model=EnrollmentOut)
async def post_enrollment(sequence_id: str, body: EnrollmentIn, session: Session, request: Request) -> EnrollmentOut:
    """Enrol a contact by hand; a 409 carries the `reason` when the contact cannot be enrolled now."""
    settings = request.app.state.settings
    attach_queue(session, request.app.state.redis, settings.namespace)
    sequence = await get_sequence(session, sequence_id)
    definition = await load_definition(session, sequence.id, sequence.current_version)
    fact = await ensure_facts(session, body.contact_id, request.app.state.clients.get("contacts"))
    enrolment = await enrol(session, sequence, definition, fact, trigger="api", now=clock.now())
    await session.commit()
    return await _with_steps(session, enrolment)


@router.get("/sequences/{sequence_id}/enrollments", response_model=Page[EnrollmentOut])
async def list_enrollments(
    sequence_id: str,
    session: Session,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    state: Annotated[str | None, Query(pattern="^(active|completed|exited)$")] = None,
) -> Page[EnrollmentOut]:
    """List a sequence's enrolments, oldest first, without their steps."""
    await get_sequence(session, sequence_id)
    query = (
        select(Enrolment)
        .where(Enrolment.sequence_id == sequence_id)
        .order_by(col(Enrolment.enrolled_at), col(Enrolment.id))
        .limit(limit + 1)
    )
    if state is not None:
        query = query.where(Enrolment.state == state)
    if cursor is not None:
        after, last_id = decode_time_cursor(cursor)
        query = query.where(
            or_(col(Enrolment.enrolled_at) > after, and_(col(Enrolment.enrolled_at) == after, col(Enrolment.id) > last_id))
        )
    rows = list((await session.exec(query)).all())
    items = [EnrollmentOut.model_validate(row, from_attributes=True) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return Page[EnrollmentOut](items=items, next_cursor=encode_cursor(last.enrolled_at.isoformat(), last.id) if last else None)


@router.get("/enrollments/{enrollment_id}", response_model=EnrollmentOut)
async def read_enrollment(enrollment_id: str, session: Session) -> EnrollmentOut:
    """Read one enrolment with every step run: when each step was due and what became of it."""
    enrolment = await session.get(Enrolment, enrollment_id)
    if enrolment is None:
        raise NotFound(f"no enrolment has id {enrollment_id}")
    return await _with_steps(session, enrolment)
