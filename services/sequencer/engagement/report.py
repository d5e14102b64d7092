"""The per-step report of a sequence, built on the metric definitions of `engagement.metrics`.

A message counts as sent once SMTP accepted it or finally failed: a refusal (`failed_permanent`) or
a send given up after retries (`failed_temporary`) counts as sent and bounced, so the bounce rate
stays bounces / sent. The send log next to the metrics counts the messages by their send state.
Erased contacts' messages are gone, but their counts live on in `StepCounter` and are added here.
"""

from collections import Counter, defaultdict
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.sequencer.engagement.metrics import (
    COUNT_FIELDS,
    EmailMetrics,
    MessageEngagement,
    add_metrics,
    compute_metrics,
    metrics_from_counts,
)
from services.sequencer.engagement.models import MessageEvent, StepCounter
from services.sequencer.enrolments.models import Enrolment, StepRun
from services.sequencer.sending.models import SentMessage
from services.sequencer.sequences.models import SequenceVersion
from services.sequencer.sequences.store import definition_of, get_sequence

FINAL_STATES = frozenset({"sent", "failed_permanent", "failed_temporary"})
FAILED_STATES = frozenset({"failed_permanent", "failed_temporary"})


class StepReport(BaseModel):
    """Metrics of one email step; every rate is null when its denominator is zero."""

    step_id: str
    template_id: str | None
    sent: int
    delivered: int
    bounces: int
    failed: int
    total_opens: int
    unique_opens: int
    machine_opens: int
    total_clicks: int
    unique_clicks: int
    bot_clicks: int
    unsubscribes: int
    complaints: int
    open_rate: float | None
    click_rate: float | None
    click_to_open: float | None
    bounce_rate: float | None
    unsubscribe_rate: float | None
    goal_reached: int
    send_log: dict[str, int]
    pending: int


class SequenceReport(BaseModel):
    sequence_id: str
    status: str
    finished: bool
    enrolments: dict[str, int]
    goal_reached: int
    steps: list[StepReport]
    generated_at: datetime


def message_engagement(message: SentMessage, hits: Counter[tuple[str, str | None]], kinds: set[str]) -> MessageEngagement:
    """Return one message's outcome and counted hits as the metric definitions read them."""
    failed = message.state in FAILED_STATES
    return MessageEngagement(
        message_id=message.message_id,
        sent=message.state in FINAL_STATES,
        bounced=failed or message.status == "bounced",
        human_opens=hits[("opened", "human")],
        machine_opens=hits[("opened", "machine")],
        human_clicks=hits[("clicked", "human")],
        bot_clicks=hits[("clicked", "bot")],
        unsubscribed="unsubscribed" in kinds,
        complained="complained" in kinds,
        step_id=message.step_id,
    )


async def _hits_by_message(session: AsyncSession, message_ids: list[str]) -> dict[str, Counter[tuple[str, str | None]]]:
    hits: dict[str, Counter[tuple[str, str | None]]] = defaultdict(Counter)
    for chunk in _chunks(message_ids, 500):
        query = (
            select(MessageEvent.message_id, MessageEvent.type, MessageEvent.verdict, func.count())
            .where(col(MessageEvent.message_id).in_(chunk))
            .group_by(col(MessageEvent.message_id), col(MessageEvent.type), col(MessageEvent.verdict))
        )
        for message_id, kind, verdict, count in (await session.exec(query)).all():
            hits[message_id][(kind, verdict)] += count
    return hits


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


async def engagement_of(session: AsyncSession, messages: list[SentMessage]) -> list[MessageEngagement]:
    hits = await _hits_by_message(session, [message.message_id for message in messages])
    result = []
    for message in messages:
        counter = hits.get(message.message_id, Counter())
        kinds = {kind for kind, _ in counter}
        result.append(message_engagement(message, counter, kinds))
    return result


async def _email_steps(session: AsyncSession, sequence_id: str, current_version: int) -> list[tuple[str, str | None]]:
    """Return (step id, template id) of every email step of every version, current version's order first."""
    versions = (
        await session.exec(select(SequenceVersion).where(SequenceVersion.sequence_id == sequence_id))
    ).all()
    ordered = sorted(versions, key=lambda version: (version.version != current_version, -version.version))
    steps: dict[str, str | None] = {}
    for version in ordered:
        for _, step in definition_of(version).iter_steps():
            if step.email is not None and step.id is not None and step.id not in steps:
                steps[step.id] = step.email.template_id
    return list(steps.items())


async def sequence_report(session: AsyncSession, sequence_id: str, now: datetime) -> SequenceReport:
    """Build the report of a sequence over all its versions."""
    sequence = await get_sequence(session, sequence_id)
    messages = list((await session.exec(select(SentMessage).where(SentMessage.sequence_id == sequence_id))).all())
    engagements = await engagement_of(session, messages)
    counters = {
        row.step_id: row
        for row in (await session.exec(select(StepCounter).where(StepCounter.sequence_id == sequence_id))).all()
    }
    enrolment_states = Counter(
        dict((await session.exec(_count_by(Enrolment.state, sequence_id))).all())  # type: ignore[arg-type]
    )
    goals = Counter(
        dict(
            (
                await session.exec(
                    _count_by(Enrolment.current_step_id, sequence_id).where(Enrolment.exit_reason == "goal_reached")
                )
            ).all()  # type: ignore[arg-type]
        )
    )
    scheduled = Counter(dict((await session.exec(_scheduled_by_step(sequence_id))).all()))  # type: ignore[arg-type]

    steps = []
    for step_id, template_id in await _email_steps(session, sequence_id, sequence.current_version):
        step_messages = [message for message in messages if message.step_id == step_id]
        step_engagement = [item for item in engagements if item.step_id == step_id]
        counter = counters.get(step_id)
        steps.append(_step_report(step_id, template_id, step_messages, step_engagement, counter, goals[step_id], scheduled[step_id]))

    erased_goals = sum(counter.goal_reached for counter in counters.values())
    return SequenceReport(
        sequence_id=sequence_id,
        status=sequence.status,
        finished=enrolment_states["active"] == 0,
        enrolments=dict(enrolment_states),
        goal_reached=sum(goals.values()) + erased_goals,
        steps=steps,
        generated_at=now,
    )


def _count_by(column: object, sequence_id: str):  # type: ignore[no-untyped-def]
    return select(column, func.count()).where(Enrolment.sequence_id == sequence_id).group_by(column)


def _scheduled_by_step(sequence_id: str):  # type: ignore[no-untyped-def]
    return (
        select(StepRun.step_id, func.count())
        .join(Enrolment, col(Enrolment.id) == col(StepRun.enrolment_id))
        .where(Enrolment.sequence_id == sequence_id, StepRun.state == "scheduled")
        .group_by(col(StepRun.step_id))
    )


def _step_report(
    step_id: str,
    template_id: str | None,
    messages: list[SentMessage],
    engagement: list[MessageEngagement],
    counter: StepCounter | None,
    goal_reached: int,
    scheduled: int,
) -> StepReport:
    metrics: EmailMetrics = compute_metrics(engagement)
    failed = sum(1 for message in messages if message.state in FAILED_STATES)
    if counter is not None:
        metrics = add_metrics(metrics, metrics_from_counts({name: getattr(counter, name) for name in COUNT_FIELDS}))
        failed += counter.failed
        goal_reached += counter.goal_reached
    send_log = Counter(message.state for message in messages)
    return StepReport(
        step_id=step_id,
        template_id=template_id,
        failed=failed,
        goal_reached=goal_reached,
        send_log=dict(send_log),
        # A message being sent or waiting for a retry still has its step run scheduled.
        pending=scheduled,
        **{name: getattr(metrics, name) for name in (*COUNT_FIELDS, "open_rate", "click_rate", "click_to_open", "bounce_rate", "unsubscribe_rate")},
    )
