"""Internal routes for sequences."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit.app import get_session
from services.kit.pagination import CursorQuery, LimitQuery, Page
from services.sequencer.sequences.store import (
    SequenceOut,
    activate_sequence,
    create_sequence,
    get_sequence,
    get_version,
    list_sequences,
    pause_sequence,
    sequence_out,
    update_sequence,
)

router = APIRouter(tags=["sequences"])

Session = Annotated[AsyncSession, Depends(get_session)]
Definition = Annotated[dict[str, Any], Body(description="A sequence definition; see docs/sequences.md")]


@router.post("/sequences", status_code=201, response_model=SequenceOut)
async def post_sequence(body: Definition, session: Session) -> SequenceOut:
    """Create a sequence as a draft; each invalid field is named by its path, e.g. steps[2].wait.days."""
    sequence, version = await create_sequence(session, body)
    await session.commit()
    return sequence_out(sequence, version)


@router.get("/sequences", response_model=Page[SequenceOut])
async def get_sequences(
    session: Session,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
    status: Annotated[str | None, Query(pattern="^(draft|active|paused)$")] = None,
) -> Page[SequenceOut]:
    return await list_sequences(session, limit=limit, cursor=cursor, status=status)


@router.get("/sequences/{sequence_id}", response_model=SequenceOut)
async def get_one_sequence(sequence_id: str, session: Session) -> SequenceOut:
    sequence = await get_sequence(session, sequence_id)
    return sequence_out(sequence, await get_version(session, sequence.id, sequence.current_version))


@router.put("/sequences/{sequence_id}", response_model=SequenceOut)
async def put_sequence(sequence_id: str, body: Definition, session: Session) -> SequenceOut:
    """Edit a sequence: a draft changes in place; an activated one gets a new version for new enrolments."""
    sequence, version = await update_sequence(session, sequence_id, body)
    await session.commit()
    return sequence_out(sequence, version)


@router.post("/sequences/{sequence_id}/activate", response_model=SequenceOut)
async def post_activate(sequence_id: str, session: Session) -> SequenceOut:
    """Start or resume a sequence; a 422 names each email step whose template does not exist."""
    sequence, version = await activate_sequence(session, sequence_id)
    await session.commit()
    return sequence_out(sequence, version)


@router.post("/sequences/{sequence_id}/pause", response_model=SequenceOut)
async def post_pause(sequence_id: str, session: Session) -> SequenceOut:
    sequence, version = await pause_sequence(session, sequence_id)
    await session.commit()
    return sequence_out(sequence, version)
