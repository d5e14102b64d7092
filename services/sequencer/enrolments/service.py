"""Enrolling contacts, moving them from step to step, and taking them out.

A step run is created for each email and wait step an enrolment reaches, with the instant it falls
due. Branches are decided on the spot and recorded as finished step runs. Each step starts at the
instant the step before it was due (after its deferrals), not when a worker happened to run it, so a
late worker does not shift the rest of the sequence.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit.consumer import BATCH_CACHE
from services.kit.db import insert_new
from services.kit.logging import get_logger
from services.kit.problems import Conflict
from services.sequencer.dbutil import insert_ignoring_conflict
from services.sequencer.engagement.queries import human_actions_by_step
from services.sequencer.enrolments.models import Enrolment, StepRun
from services.sequencer.enrolments.wakeups import Wakeup, wake_after_commit
from services.sequencer.facts.models import ContactFact
from services.sequencer.facts.service import blocking_consent, evaluation_facts
from services.sequencer.ids import new_id
from services.sequencer.schedule import NoSendTimeError, earliest_send_at, resolve_zone, wait_ends_at
from services.sequencer.sending.models import SentMessage
from services.sequencer.sequences import SequenceDefinition, Step, evaluate_branch, first_step, goal_reached, may_reenter, next_step
from services.sequencer.sequences.models import Sequence
from services.sequencer.sequences.schema import EventGoal

# Key of the batch's active enrolments in a consumer batch's cache.
_ENROLMENTS = "active_enrolments"

log = get_logger(__name__)


@dataclass(frozen=True)
class Move:
    """An enrolment to move past `after` (to its first step when None), its next step starting at `start`."""

    enrolment: Enrolment
    definition: SequenceDefinition
    fact: ContactFact | None
    after: str | None
    start: datetime


@dataclass(frozen=True)
class ScheduledRun:
    """A step run that `advance` just scheduled."""

    id: int
    due_at: datetime


class EnrolmentRefused(Conflict):
    """The contact cannot be enrolled now; `reason` is a one-word code for why."""

    def __init__(self, detail: str, *, reason: str) -> None:
        super().__init__(detail, reason=reason)
        self.reason = reason


async def enrol(
    session: AsyncSession,
    sequence: Sequence,
    definition: SequenceDefinition,
    fact: ContactFact,
    *,
    trigger: str,
    now: datetime,
) -> Enrolment:
    """Enrol a contact in the current version of an active sequence and schedule its first step.

    Raises:
        EnrolmentRefused: the sequence is not active, the contact is enrolled already, the re-entry
            rule forbids another pass, the contact has reached the goal, or it may not be emailed.
    """
    contact_id = fact.contact_id
    if sequence.status != "active":
        raise EnrolmentRefused(f"sequence {sequence.id} is {sequence.status}; activate it first", reason="not_active")

    previous = await _latest_enrolment(session, contact_id, sequence.id)
    if previous is not None and previous.state == "active":
        raise EnrolmentRefused(
            f"contact {contact_id} is already enrolled in sequence {sequence.id} ({previous.id})", reason="enrolled"
        )
    if previous is not None and not may_reenter(definition.reentry, previous.enrolled_at, now):
        raise EnrolmentRefused(
            f"the re-entry rule ({definition.reentry.mode}) does not let contact {contact_id} enter sequence "
            f"{sequence.id} again",
            reason="reentry",
        )
    if goal_met(definition, fact):
        raise EnrolmentRefused(f"contact {contact_id} has already reached the sequence's goal", reason="goal_reached")
    blocked = blocking_consent(fact)
    if blocked is not None:
        raise EnrolmentRefused(f"contact {contact_id} may not be emailed: consent is {blocked}", reason=blocked)

    entry = previous.entry + 1 if previous is not None else 1
    enrolment_id = new_id("enr")
    inserted = await insert_ignoring_conflict(
        session,
        Enrolment,
        {
            "id": enrolment_id,
            "sequence_id": sequence.id,
            "version": sequence.current_version,
            "contact_id": contact_id,
            "entry": entry,
            "state": "active",
            "trigger": trigger[:200],
            "enrolled_at": now,
            "updated_at": now,
        },
    )
    if inserted is None:
        raise EnrolmentRefused(f"contact {contact_id} was enrolled in sequence {sequence.id} just now", reason="enrolled")

    enrolment = await session.get(Enrolment, enrolment_id)
    assert enrolment is not None
    _remember(session, enrolment)
    log.info("enrolment.created", enrolment_id=enrolment.id, sequence_id=sequence.id, contact_id=contact_id, trigger=trigger)
    await advance(session, enrolment, definition, fact, after=None, start=now)
    return enrolment


async def _latest_enrolment(session: AsyncSession, contact_id: str, sequence_id: str) -> Enrolment | None:
    query = (
        select(Enrolment)
        .where(Enrolment.contact_id == contact_id, Enrolment.sequence_id == sequence_id)
        .order_by(col(Enrolment.entry).desc())
        .limit(1)
    )
    return (await session.exec(query)).first()


def goal_met(definition: SequenceDefinition, fact: ContactFact) -> bool:
    """Return whether a stage or segment goal holds for the contact; event goals hold only on their event."""
    if definition.goal is None or isinstance(definition.goal, EventGoal):
        return False
    return goal_reached(definition.goal, evaluation_facts(fact))


async def advance(
    session: AsyncSession,
    enrolment: Enrolment,
    definition: SequenceDefinition,
    fact: ContactFact | None,
    *,
    after: str | None,
    start: datetime,
) -> ScheduledRun | None:
    """Schedule the step after `after` (the first step when None), deciding branches on the way.

    Returns the new step run's id and due time, or None when the enrolment has run out of steps (it is then completed)
    or the next step run exists already (another worker advanced first).
    """
    step = first_step(definition) if after is None else next_step(definition, after)
    while step is not None and step.branch is not None:
        step = await _take_branch(session, enrolment, definition, fact, step, start)

    if step is None:
        _finish(enrolment, "completed", None, start)
        log.info("enrolment.completed", enrolment_id=enrolment.id)
        return None
    return await _schedule(session, enrolment, definition, fact, step, start)


async def _take_branch(
    session: AsyncSession,
    enrolment: Enrolment,
    definition: SequenceDefinition,
    fact: ContactFact | None,
    step: Step,
    start: datetime,
) -> Step | None:
    assert step.branch is not None and step.id is not None
    engagement = await human_actions_by_step(session, enrolment.id)
    facts = evaluation_facts(fact, engagement) if fact is not None else None
    taken = facts is not None and evaluate_branch(step.branch.condition, facts)
    await insert_ignoring_conflict(
        session,
        StepRun,
        {
            "enrolment_id": enrolment.id,
            "step_id": step.id,
            "kind": "branch",
            "state": "done",
            "started_at": start,
            "due_at": start,
            "outcome": "then" if taken else "else",
            "created_at": start,
            "finished_at": start,
        },
    )
    return next_step(definition, step.id, branch_taken=taken)


async def _schedule(
    session: AsyncSession,
    enrolment: Enrolment,
    definition: SequenceDefinition,
    fact: ContactFact | None,
    step: Step,
    start: datetime,
) -> ScheduledRun | None:
    due = _due_at(enrolment, definition, fact, step, start)
    if due is None:
        return None
    step_run_id = await insert_ignoring_conflict(session, StepRun, _scheduled_row(enrolment, step, start, due), returning=StepRun.id)
    if step_run_id is None:
        return None
    return _scheduled(session, enrolment, step, start, ScheduledRun(step_run_id, due))


async def advance_many(session: AsyncSession, moves: list[Move]) -> list[ScheduledRun | None]:
    """Run `advance` for many enrolments, inserting their next step runs with one statement.

    A move whose next step is a branch is advanced alone, because the branch reads the enrolment's
    engagement first. Returns the scheduled runs in the order of `moves`, None where none was scheduled.
    """
    answers: list[ScheduledRun | None] = [None] * len(moves)
    rows: dict[tuple[str, str], tuple[int, Step, datetime, datetime]] = {}
    for index, move in enumerate(moves):
        step = first_step(move.definition) if move.after is None else next_step(move.definition, move.after)
        if step is not None and step.branch is not None:
            answers[index] = await advance(session, move.enrolment, move.definition, move.fact, after=move.after, start=move.start)
            continue
        if step is None:
            _finish(move.enrolment, "completed", None, move.start)
            log.info("enrolment.completed", enrolment_id=move.enrolment.id)
            continue
        due = _due_at(move.enrolment, move.definition, move.fact, step, move.start)
        if due is not None:
            assert step.id is not None
            rows[(move.enrolment.id, step.id)] = (index, step, move.start, due)

    table = StepRun.__table__  # type: ignore[attr-defined]
    values = [_scheduled_row(moves[index].enrolment, step, start, due) for index, step, start, due in rows.values()]
    for step_run_id, enrolment_id, step_id in await insert_new(session, table, values, table.c.id, table.c.enrolment_id, table.c.step_id):
        index, step, start, due = rows[(enrolment_id, step_id)]
        answers[index] = _scheduled(session, moves[index].enrolment, step, start, ScheduledRun(step_run_id, due))
    return answers


def _due_at(enrolment: Enrolment, definition: SequenceDefinition, fact: ContactFact | None, step: Step, start: datetime) -> datetime | None:
    """Return when `step` falls due after `start`, or None when an email step can never go out, which exits the enrolment."""
    zone = resolve_zone(fact.timezone if fact is not None else None, definition.timezone)
    if step.wait is not None:
        return wait_ends_at(step.wait, start, zone)
    assert step.email is not None
    try:
        return earliest_send_at(start, zone, send_window=step.email.send_window, quiet_hours=definition.quiet_hours)
    except NoSendTimeError as error:
        log.error("enrolment.no_send_time", enrolment_id=enrolment.id, step_id=step.id, error=str(error))
        _finish(enrolment, "exited", "no_send_time", start)
        return None


def _scheduled_row(enrolment: Enrolment, step: Step, start: datetime, due: datetime) -> dict[str, Any]:
    return {
        "enrolment_id": enrolment.id,
        "step_id": step.id,
        "kind": step.kind,
        "state": "scheduled",
        "started_at": start,
        "due_at": due,
        "wake_revision": 0,
        "created_at": start,
    }


def _scheduled(session: AsyncSession, enrolment: Enrolment, step: Step, start: datetime, run: ScheduledRun) -> ScheduledRun:
    """Point the enrolment at its new step run, whose wake-up job is enqueued after the commit."""
    enrolment.current_step_id = step.id
    enrolment.updated_at = start
    wake_after_commit(session, Wakeup(run.id, 0, run.due_at))
    return run


def _finish(enrolment: Enrolment, state: str, reason: str | None, at: datetime) -> None:
    enrolment.state = state
    enrolment.exit_reason = reason
    enrolment.finished_at = at
    enrolment.updated_at = at


async def exit_enrolment(session: AsyncSession, enrolment: Enrolment, reason: str, now: datetime) -> bool:
    """Take a contact out of one enrolment: pending steps are cancelled and a pending retry is dropped.

    The row changes only while it is still active, because the copy in hand may be older than a
    commit that completed or ended the enrolment elsewhere (another worker, or a batch's early read).
    """
    if enrolment.state != "active":
        return False
    ended = await session.exec(
        update(Enrolment)
        .where(col(Enrolment.id) == enrolment.id, col(Enrolment.state) == "active")
        .values(state="exited", exit_reason=reason, finished_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if not ended.rowcount:
        log.info("enrolment.ended_elsewhere", enrolment_id=enrolment.id, reason=reason)
        return False
    for name, value in (("state", "exited"), ("exit_reason", reason), ("finished_at", now), ("updated_at", now)):
        set_committed_value(enrolment, name, value)
    await session.exec(
        update(StepRun)
        .where(col(StepRun.enrolment_id) == enrolment.id, col(StepRun.state) == "scheduled")
        .values(state="cancelled", outcome=reason, finished_at=now)
    )
    await session.exec(
        update(SentMessage)
        .where(col(SentMessage.enrolment_id) == enrolment.id, col(SentMessage.state) == "retrying")
        .values(state="cancelled", updated_at=now)
    )
    log.info("enrolment.exited", enrolment_id=enrolment.id, contact_id=enrolment.contact_id, reason=reason)
    return True


@dataclass
class _BatchEnrolments:
    """The active enrolments of a consumer batch's contacts, read at once; exits change the rows' state."""

    checked: set[str]
    by_contact: dict[str, list[Enrolment]]


def _batch_enrolments(session: AsyncSession) -> _BatchEnrolments | None:
    cache = session.info.get(BATCH_CACHE)
    return cache.get(_ENROLMENTS) if cache is not None else None


async def prefetch_active_enrolments(session: AsyncSession, contact_ids: set[str]) -> None:
    """Read the active enrolments of a batch's contacts with one statement."""
    ids = sorted(contact_ids)
    query = select(Enrolment).where(col(Enrolment.contact_id).in_(ids), Enrolment.state == "active")
    by_contact: dict[str, list[Enrolment]] = {}
    for enrolment in (await session.exec(query)).all():
        by_contact.setdefault(enrolment.contact_id, []).append(enrolment)
    session.info[BATCH_CACHE][_ENROLMENTS] = _BatchEnrolments(set(ids), by_contact)


def _remember(session: AsyncSession, enrolment: Enrolment) -> None:
    batch = _batch_enrolments(session)
    if batch is not None and enrolment.contact_id in batch.checked:
        batch.by_contact.setdefault(enrolment.contact_id, []).append(enrolment)


async def active_enrolments(session: AsyncSession, contact_id: str) -> list[Enrolment]:
    batch = _batch_enrolments(session)
    if batch is not None and contact_id in batch.checked:
        return [enrolment for enrolment in batch.by_contact.get(contact_id, []) if enrolment.state == "active"]
    query = select(Enrolment).where(Enrolment.contact_id == contact_id, Enrolment.state == "active")
    return list((await session.exec(query)).all())


async def exit_all(session: AsyncSession, contact_id: str, reason: str, now: datetime) -> int:
    """Take a contact out of every sequence it is in; return how many enrolments ended."""
    ended = 0
    for enrolment in await active_enrolments(session, contact_id):
        ended += await exit_enrolment(session, enrolment, reason, now)
    return ended
