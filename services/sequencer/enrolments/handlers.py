"""Consumers of the contacts service's events: keep the contact copy, enrol, end waits and take contacts out.

Every handler runs inside the consumer's transaction, which also marks the event processed, and
only schedules queue wake-ups to go out after that commit. Each side effect has a unique key
(enrolment per contact, sequence and entry; message event per event id), so a repeated event
changes nothing.
"""

from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.contracts import EventEnvelope, contact_id_of
from services.kit.contracts import contacts as topics
from services.kit.contracts import scoring as scoring_topics
from services.kit.http import ServiceClient
from services.kit.logging import get_logger
from services.kit.problems import NotFound
from services.sequencer.engagement.handlers import RecordedEngagement, is_hard_bounce, record_email_event
from services.sequencer.enrolments.models import Enrolment, StepRun
from services.sequencer.enrolments.service import (
    EnrolmentRefused,
    active_enrolments,
    enrol,
    exit_all,
    exit_enrolment,
    prefetch_active_enrolments,
)
from services.sequencer.enrolments.wakeups import Wakeup, attach_queue, wake_after_commit
from services.sequencer.facts import service as facts
from services.sequencer.facts.models import ContactFact
from services.sequencer.sequences import SequenceDefinition, goal_reached
from services.sequencer.sequences.schema import (
    EventGoal,
    EventTrigger,
    SegmentEnteredTrigger,
    SegmentLeftGoal,
    StageGoal,
    StageReachedTrigger,
)
from services.sequencer.sequences.store import active_definitions, get_sequence, load_definition

Context = dict[str, Any]

# Events that end every enrolment of the contact, with the exit reason and the consent they imply.
_LEAVING = {"unsubscribed": "unsubscribed", "email_complained": "complained", "email_bounced": "bounced"}

log = get_logger(__name__)


def _prepare(session: AsyncSession, ctx: Context) -> None:
    attach_queue(session, ctx.get("redis"), ctx["settings"].namespace)


def _contacts_client(ctx: Context) -> ServiceClient | None:
    return ctx.get("clients", {}).get("contacts")


# --- contact.event_recorded --------------------------------------------------------------------------


async def on_event_recorded(session: AsyncSession, envelope: EventEnvelope, ctx: Context) -> None:
    """Record email engagement, take leaving contacts out, meet goals, end waits and enrol on triggers."""
    _prepare(session, ctx)
    event = topics.EventRecorded.model_validate(envelope.payload).event
    if await facts.is_erased(session, event.contact_id):
        return
    now = clock.now()

    recorded = await record_email_event(session, event)
    if event.type in _LEAVING and _takes_contact_out(event, recorded):
        reason = _LEAVING[event.type]
        await _copy_consent(session, event, reason)
        await exit_all(session, event.contact_id, reason, now)
        return

    enrolments = await active_enrolments(session, event.contact_id)
    if enrolments:
        await _meet_event_goals(session, event, enrolments, now)
        await _end_event_waits(session, event, enrolments, now)
    await _enrol_on_event(session, event, ctx, now)


def _takes_contact_out(event: topics.TimelineEvent, recorded: RecordedEngagement | None) -> bool:
    if event.type != "email_bounced":
        return True
    if not is_hard_bounce(event):
        return False
    # A bounce older than the message's delivery, or of an opened message, is stale.
    status = recorded.status if recorded is not None else None
    return status is None or status.bounce_is_current


async def _copy_consent(session: AsyncSession, event: topics.TimelineEvent, reason: str) -> None:
    topic = event.properties.get("topic") if reason == "unsubscribed" else None
    await facts.apply_consent(session, event.contact_id, topic if isinstance(topic, str) else None, reason, event.occurred_at)


async def _meet_event_goals(
    session: AsyncSession, event: topics.TimelineEvent, enrolments: list[Enrolment], now: datetime
) -> None:
    for enrolment in enrolments:
        definition = await load_definition(session, enrolment.sequence_id, enrolment.version)
        if not isinstance(definition.goal, EventGoal) or event.occurred_at < enrolment.enrolled_at:
            continue
        if definition.goal.matches(event.type, event.properties):
            await exit_enrolment(session, enrolment, "goal_reached", now)


async def _end_event_waits(
    session: AsyncSession, event: topics.TimelineEvent, enrolments: list[Enrolment], now: datetime
) -> None:
    """Wake the waits for an event that this event matches, so their enrolments move on now."""
    # Most events match no wait of the contact's sequences (every email sent comes back as one), so
    # the definitions are checked before the database is queried.
    for enrolment in enrolments:
        definition = await load_definition(session, enrolment.sequence_id, enrolment.version)
        if _waits_for(definition, event):
            break
    else:
        return

    query = (
        select(StepRun, Enrolment)
        .join(Enrolment, col(Enrolment.id) == col(StepRun.enrolment_id))
        .where(Enrolment.contact_id == event.contact_id, Enrolment.state == "active")
        .where(StepRun.state == "scheduled", StepRun.kind == "wait")
    )
    for run, enrolment in (await session.exec(query)).all():
        definition = await load_definition(session, enrolment.sequence_id, enrolment.version)
        wait = definition.step(run.step_id).wait
        if wait is None or wait.until_event is None or event.occurred_at < run.started_at:
            continue
        if wait.until_event.matches(event.type, event.properties) and run.due_at > now:
            run.due_at = now
            run.wake_revision += 1
            run.outcome = f"event:{event.id}"[:64]
            wake_after_commit(session, Wakeup(run.id or 0, run.wake_revision, now))


def _waits_for(definition: SequenceDefinition, event: topics.TimelineEvent) -> bool:
    """Return whether a step of the sequence waits for an event that `event` matches."""
    for _, step in definition.iter_steps():
        wait = step.wait
        if wait is not None and wait.until_event is not None and wait.until_event.matches(event.type, event.properties):
            return True
    return False


async def _enrol_on_event(session: AsyncSession, event: topics.TimelineEvent, ctx: Context, now: datetime) -> None:
    for sequence, definition in await active_definitions(session):
        trigger = definition.trigger
        if isinstance(trigger, EventTrigger) and trigger.matches(event.type, event.properties):
            await _try_enrol(session, ctx, sequence.id, event.contact_id, f"event:{event.type}:{event.id}", now)


async def _try_enrol(session: AsyncSession, ctx: Context, sequence_id: str, contact_id: str, trigger: str, now: datetime) -> None:
    """Enrol on a trigger; a refusal (enrolled already, re-entry, goal, consent) is logged, not raised."""
    try:
        fact = await facts.ensure_facts(session, contact_id, _contacts_client(ctx))
    except NotFound as error:
        log.info("enrolment.contact_unknown", contact_id=contact_id, sequence_id=sequence_id, detail=error.detail)
        return
    sequence = await get_sequence(session, sequence_id)
    definition = await load_definition(session, sequence.id, sequence.current_version)
    try:
        await enrol(session, sequence, definition, fact, trigger=trigger, now=now)
    except EnrolmentRefused as refusal:
        log.info("enrolment.refused", contact_id=contact_id, sequence_id=sequence_id, reason=refusal.reason)


# --- facts, goals and triggers from the other topics -------------------------------------------------


async def _exit_on_goals(session: AsyncSession, fact: ContactFact | None, now: datetime) -> None:
    """Take the contact out of every sequence whose stage or segment goal it now meets."""
    if fact is None:
        return
    evaluation = facts.evaluation_facts(fact)
    for enrolment in await active_enrolments(session, fact.contact_id):
        definition = await load_definition(session, enrolment.sequence_id, enrolment.version)
        goal = definition.goal
        if isinstance(goal, StageGoal | SegmentLeftGoal) and goal_reached(goal, evaluation):
            await exit_enrolment(session, enrolment, "goal_reached", now)


async def on_contact_changed(session: AsyncSession, envelope: EventEnvelope, ctx: Context) -> None:
    _prepare(session, ctx)
    payload = topics.ContactChanged.model_validate(envelope.payload)
    fact = await facts.apply_snapshot(session, payload.contact, envelope.occurred_at)
    await _exit_on_consent(session, fact, clock.now())
    await _exit_on_goals(session, fact, clock.now())


async def on_stage_changed(session: AsyncSession, envelope: EventEnvelope, ctx: Context) -> None:
    _prepare(session, ctx)
    payload = topics.StageChanged.model_validate(envelope.payload)
    fact = await facts.apply_stage(session, payload.contact_id, payload.to_stage, payload.at)
    now = clock.now()
    await _exit_on_goals(session, fact, now)
    if fact is None:
        return
    for sequence, definition in await active_definitions(session):
        trigger = definition.trigger
        if isinstance(trigger, StageReachedTrigger) and trigger.stage == payload.to_stage:
            await _try_enrol(session, ctx, sequence.id, payload.contact_id, f"stage:{payload.to_stage}", now)


async def on_consent_changed(session: AsyncSession, envelope: EventEnvelope, ctx: Context) -> None:
    _prepare(session, ctx)
    payload = topics.ConsentChanged.model_validate(envelope.payload)
    fact = await facts.apply_consent(session, payload.contact_id, payload.topic, payload.status, payload.at)
    await _exit_on_consent(session, fact, clock.now())


async def _exit_on_consent(session: AsyncSession, fact: ContactFact | None, now: datetime) -> None:
    """End every enrolment when the contact's overall consent no longer allows marketing email."""
    if fact is None:
        return
    blocked = facts.blocking_consent(fact)
    if blocked is not None:
        await exit_all(session, fact.contact_id, blocked, now)


async def on_segment_entered(session: AsyncSession, envelope: EventEnvelope, ctx: Context) -> None:
    _prepare(session, ctx)
    payload = topics.SegmentMembershipChanged.model_validate(envelope.payload)
    fact = await facts.apply_segment(session, payload.contact_id, payload.segment_id, True, payload.at)
    if fact is None or payload.segment_id not in facts.segment_ids(fact):
        return
    now = clock.now()
    for sequence, definition in await active_definitions(session):
        trigger = definition.trigger
        if isinstance(trigger, SegmentEnteredTrigger) and trigger.segment_id == payload.segment_id:
            await _try_enrol(session, ctx, sequence.id, payload.contact_id, f"segment:{payload.segment_id}", now)


async def on_segment_left(session: AsyncSession, envelope: EventEnvelope, ctx: Context) -> None:
    _prepare(session, ctx)
    payload = topics.SegmentMembershipChanged.model_validate(envelope.payload)
    fact = await facts.apply_segment(session, payload.contact_id, payload.segment_id, False, payload.at)
    await _exit_on_goals(session, fact, clock.now())


async def on_score_changed(session: AsyncSession, envelope: EventEnvelope, ctx: Context) -> None:
    payload = scoring_topics.ScoreChanged.model_validate(envelope.payload)
    await facts.apply_score(session, payload.contact_id, payload.model, payload.total, payload.at)


async def prefetch_batch(session: AsyncSession, envelopes: list[EventEnvelope], ctx: Context) -> None:
    """Read the facts, erasures and active enrolments of a batch's contacts at once, instead of per event."""
    contact_ids = {contact_id for envelope in envelopes if (contact_id := contact_id_of(envelope))}
    if contact_ids:
        await facts.prefetch_facts(session, contact_ids)
        await prefetch_active_enrolments(session, contact_ids)


HANDLERS = {
    topics.EVENT_RECORDED: on_event_recorded,
    topics.CONTACT_CHANGED: on_contact_changed,
    topics.STAGE_CHANGED: on_stage_changed,
    topics.CONSENT_CHANGED: on_consent_changed,
    topics.SEGMENT_ENTERED: on_segment_entered,
    topics.SEGMENT_LEFT: on_segment_left,
    scoring_topics.SCORE_CHANGED: on_score_changed,
}
