"""Everything the sequencer holds about one contact: export it, or erase it for good.

Erasure deletes the contact's facts, enrolments, step runs, messages (with their rendered content)
and message events. Before the messages go, their contributions to each step's metrics move into
the anonymous `StepCounter` rows, so reports keep their numbers. A hash of the contact id stays
behind so that late events cannot bring the contact's data back.
"""

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit.logging import get_logger
from services.sequencer.dbutil import insert_ignoring_conflict
from services.sequencer.engagement.metrics import COUNT_FIELDS, compute_metrics
from services.sequencer.engagement.models import MessageEvent, StepCounter
from services.sequencer.engagement.report import FAILED_STATES, engagement_of
from services.sequencer.enrolments.models import Enrolment, StepRun
from services.sequencer.facts.models import ContactFact, ErasedContact
from services.sequencer.facts.service import contact_hash, forget_batch_cache
from services.sequencer.sending.models import SentMessage

log = get_logger(__name__)


def _document(row: SQLModel) -> dict[str, Any]:
    return row.model_dump(mode="json")


async def export_contact(session: AsyncSession, contact_id: str) -> dict[str, Any]:
    """Return every record held about the contact, as JSON-ready documents."""
    fact = await session.get(ContactFact, contact_id)
    enrolments = list((await session.exec(select(Enrolment).where(Enrolment.contact_id == contact_id))).all())
    enrolment_ids = [enrolment.id for enrolment in enrolments]
    runs = (
        list((await session.exec(select(StepRun).where(col(StepRun.enrolment_id).in_(enrolment_ids)))).all())
        if enrolment_ids
        else []
    )
    messages = list((await session.exec(select(SentMessage).where(SentMessage.contact_id == contact_id))).all())
    events = list((await session.exec(select(MessageEvent).where(MessageEvent.contact_id == contact_id))).all())

    runs_by_enrolment: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        runs_by_enrolment[run.enrolment_id].append(_document(run))
    events_by_message: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        events_by_message[event.message_id].append(_document(event))

    return {
        "service": "sequencer",
        "contact_id": contact_id,
        "facts": _document(fact) if fact is not None else None,
        "enrolments": [{**_document(item), "steps": runs_by_enrolment[item.id]} for item in enrolments],
        "messages": [{**_document(item), "events": events_by_message[item.message_id]} for item in messages],
    }


async def erase_contact(session: AsyncSession, contact_id: str, now: datetime) -> dict[str, int]:
    """Delete everything held about the contact, keeping only anonymous counts; return what was deleted."""
    messages = list((await session.exec(select(SentMessage).where(SentMessage.contact_id == contact_id))).all())
    enrolments = list((await session.exec(select(Enrolment).where(Enrolment.contact_id == contact_id))).all())
    await _keep_counts(session, messages, enrolments, now)

    enrolment_ids = [enrolment.id for enrolment in enrolments]
    counts = {
        "message_events": await _delete(session, delete(MessageEvent).where(col(MessageEvent.contact_id) == contact_id)),
        "messages": await _delete(session, delete(SentMessage).where(col(SentMessage.contact_id) == contact_id)),
        "step_runs": await _delete(session, delete(StepRun).where(col(StepRun.enrolment_id).in_(enrolment_ids)))
        if enrolment_ids
        else 0,
        "enrolments": await _delete(session, delete(Enrolment).where(col(Enrolment.contact_id) == contact_id)),
        "facts": await _delete(session, delete(ContactFact).where(col(ContactFact.contact_id) == contact_id)),
    }
    await insert_ignoring_conflict(session, ErasedContact, {"contact_hash": contact_hash(contact_id), "erased_at": now})
    # The deletes above skipped the session's bookkeeping, so its objects may be gone from the
    # database. Changes still pending (earlier events of a batch) are written before they are dropped.
    await session.flush()
    session.expunge_all()
    forget_batch_cache(session)
    log.info("contact.erased", **counts)
    return counts


async def _delete(session: AsyncSession, statement: Any) -> int:
    result = await session.exec(statement.execution_options(synchronize_session=False))
    return int(result.rowcount or 0)


async def _keep_counts(session: AsyncSession, messages: list[SentMessage], enrolments: list[Enrolment], now: datetime) -> None:
    """Add the erased messages' metrics and goals to the anonymous counters of their steps."""
    increments: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    engagement = await engagement_of(session, messages)
    by_step: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for message, item in zip(messages, engagement, strict=True):
        key = (message.sequence_id, message.step_id)
        by_step[key].append(item)
        increments[key]["failed"] += message.state in FAILED_STATES
    for key, items in by_step.items():
        metrics = compute_metrics(items)
        for name in COUNT_FIELDS:
            increments[key][name] += getattr(metrics, name)
    for enrolment in enrolments:
        if enrolment.exit_reason == "goal_reached" and enrolment.current_step_id:
            increments[(enrolment.sequence_id, enrolment.current_step_id)]["goal_reached"] += 1

    for (sequence_id, step_id), values in increments.items():
        zeros = {name: 0 for name in (*COUNT_FIELDS, "failed", "goal_reached")}
        await insert_ignoring_conflict(
            session, StepCounter, {"sequence_id": sequence_id, "step_id": step_id, "updated_at": now, **zeros}
        )
        # Increments in SQL, so two erasures at once both count.
        await session.exec(
            update(StepCounter)
            .where(col(StepCounter.sequence_id) == sequence_id, col(StepCounter.step_id) == step_id)
            .values(updated_at=now, **{name: getattr(StepCounter, name) + value for name, value in values.items()})
            .execution_options(synchronize_session=False)
        )
