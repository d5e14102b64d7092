"""Running one due step run: a wait ends, or an email is checked, rendered and sent exactly once.

An email goes through three short transactions so that running the same step twice, in two
workers or after a crash, never sends it twice:

1. Claim: lock the step run (SKIP LOCKED on PostgreSQL) and the contact's row, check the enrolment,
   goal, consent, send window, quiet hours and frequency cap, render the template, and record the
   message as `sending` with its Message-ID and this worker's id. Commit.
2. Hand-over: after the content went out, just before the final dot of DATA, record
   `awaiting_reply`. Commit. From here on the server may hold the message.
3. Outcome: record `sent`, `retrying` or `failed_*`, finish the step run and schedule the next step.
   A final dot that got no reply (timeout, dropped connection) is taken as sent and never retried,
   because the server may hold the message.

A second run that finds the message `sending` or `awaiting_reply` leaves it alone while the worker
that claimed it is alive (its heartbeat is fresh). If that worker died, a `sending` message is sent
again with the same Message-ID, because its final dot never went out, and an `awaiting_reply` one
is taken as sent, because the server may have it.
"""

import asyncio
import hashlib
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import Message
from typing import Any

from sqlalchemy import and_, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select

from services.kit import clock
from services.kit.contracts.sequencer import EMAIL_ENGAGEMENT, EmailEngagement
from services.kit.logging import get_logger
from services.kit.problems import NotFound, Problem, Unavailable
from services.sequencer.dbutil import dialect_of, insert_ignoring_conflict, locked
from services.sequencer.engagement.recording import refresh_status
from services.sequencer.enrolments.models import Enrolment, StepRun, WorkerHeartbeat
from services.sequencer.enrolments.runtime import Runtime
from services.sequencer.enrolments.service import advance, exit_enrolment, goal_met
from services.sequencer.enrolments.wakeups import Wakeup, attach_queue, cancel_wakeup, wake_after_commit
from services.sequencer.facts.models import ContactFact
from services.sequencer.facts.service import blocking_consent, fetch_from_contacts, get_facts, recipient
from services.sequencer.schedule import NoSendTimeError, earliest_send_at, resolve_zone
from services.sequencer.sending import MessageBuildError, build_message, new_message_id, tracking_links
from services.sequencer.sending.models import SentMessage
from services.sequencer.sending.outcome import SmtpOutcomeKind
from services.sequencer.sending.smtp import SendResult
from services.sequencer.sequences import SequenceDefinition, Step
from services.sequencer.sequences.models import Sequence, SequenceVersion
from services.sequencer.sequences.store import definition_of
from services.sequencer.templates import TemplateRenderError, TemplateValidationError, TrackingLinks, render_email
from services.sequencer.templates.models import Template
from services.sequencer.templates.store import as_email_template

IN_PROGRESS = frozenset({"sending", "awaiting_reply"})
COUNTED_BY_CAP = ("sending", "awaiting_reply", "sent", "retrying")
OUTCOME_WRITE_TRIES = 5

# Connections of hand-overs being returned in the background (referenced so they are not collected).
_closing: set[asyncio.Task[None]] = set()

log = get_logger(__name__)


@dataclass(frozen=True)
class Delivery:
    """An email claimed by this worker and ready for SMTP."""

    step_run_id: int
    message_row_id: int
    message_id: str
    recipient: str
    email: Message


async def run_step(runtime: Runtime, step_run_id: int, *, due_next: list[int] | None = None) -> str:
    """Run one step run if it is due and no other worker is running it; return the outcome in one word.

    With `due_next`, a step that a finished wait schedules for now is appended to it and gets no Redis
    wake-up, because the caller runs it at once. The sweep still finds it if the caller never does.
    """
    # The claim and outcome transactions share one connection, which saves a pool checkout and its
    # liveness ping for each of them. The hand-over takes its own (see `_hand_over`).
    async with runtime.db.engine.connect() as connection:
        async with AsyncExitStack() as locks, AsyncSession(bind=connection, expire_on_commit=False) as session:
            attach_queue(session, runtime.redis, runtime.settings.namespace)
            claim = _Claim(runtime, session, locks, due_next)
            prepared = await _prepare(claim, step_run_id)
        if isinstance(prepared, str):
            return prepared
        return await _deliver(runtime, prepared, connection)


@dataclass
class _Claim:
    """The claim transaction: its session, and the process's SQLite write lock, taken before the first write.

    Reads and the call to the contacts service happen before the lock, so on SQLite they do not make
    the other steps wait. The lock is released when the session ends (`locks` closes after it).
    """

    runtime: Runtime
    session: AsyncSession
    locks: AsyncExitStack
    due_next: list[int] | None = None
    writing: bool = False

    async def write(self) -> None:
        if not self.writing:
            await self.locks.enter_async_context(self.runtime.writing())
            self.writing = True


async def _prepare(claim: _Claim, step_run_id: int) -> str | Delivery:
    runtime, session = claim.runtime, claim.session
    query = locked(select(StepRun).where(StepRun.id == step_run_id), session, skip_locked=True)
    run = (await session.exec(query)).first()
    if run is None:
        return "busy"
    now = clock.now()
    if run.state != "scheduled":
        return "finished"
    if run.due_at > now:
        return "not_due"

    enrolment, sequence, version = await enrolment_of(session, run)
    if enrolment.state != "active":
        await claim.write()
        await close_run(session, run, "cancelled", enrolment.exit_reason or enrolment.state, now)
        await session.commit()
        return "cancelled"
    if sequence.status != "active":
        return "paused"

    definition = definition_of(version)
    step = definition.step(run.step_id)
    fact = await _contact_facts(claim, enrolment.contact_id)
    if fact is None:
        await claim.write()
        await exit_enrolment(session, enrolment, "contact_missing", now)
        await session.commit()
        return "contact_missing"
    if goal_met(definition, fact):
        await claim.write()
        await exit_enrolment(session, enrolment, "goal_reached", now)
        await session.commit()
        return "goal_reached"

    if step.wait is not None:
        await claim.write()
        return await _finish_wait(claim, run, enrolment, definition, fact, now)
    return await _prepare_email(claim, run, enrolment, definition, step, fact, now)


def enrolments_with_versions() -> Select[tuple[Enrolment, Sequence, SequenceVersion]]:
    """Build the query of enrolments joined with their sequence and the version each follows."""
    return (
        select(Enrolment, Sequence, SequenceVersion)
        .join(Sequence, col(Sequence.id) == col(Enrolment.sequence_id))
        .join(
            SequenceVersion,
            and_(col(SequenceVersion.sequence_id) == col(Enrolment.sequence_id), col(SequenceVersion.version) == col(Enrolment.version)),
        )
    )


async def enrolment_of(session: AsyncSession, run: StepRun) -> tuple[Enrolment, Sequence, SequenceVersion]:
    """Load a run's enrolment with its sequence and the version it follows, in one query."""
    query = enrolments_with_versions().where(Enrolment.id == run.enrolment_id)
    enrolment, sequence, version = (await session.exec(query)).one()
    return enrolment, sequence, version


async def _contact_facts(claim: _Claim, contact_id: str) -> ContactFact | None:
    fact = await get_facts(claim.session, contact_id)
    if fact is not None and fact.email:
        return fact
    if claim.runtime.contacts is None:
        return fact
    # Copying the contact writes to the database.
    await claim.write()
    try:
        return await fetch_from_contacts(claim.session, contact_id, claim.runtime.contacts)
    except NotFound:
        return None


async def close_run(session: AsyncSession, run: StepRun, state: str, outcome: str, now: datetime) -> bool:
    """Move a scheduled run to a final state; False when another worker did it first."""
    result = await session.exec(
        update(StepRun)
        .where(col(StepRun.id) == run.id, col(StepRun.state) == "scheduled")
        .values(state=state, outcome=outcome[:64], finished_at=now)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:
        return False
    run.state, run.outcome, run.finished_at = state, outcome[:64], now
    return True


async def _finish_wait(
    claim: _Claim,
    run: StepRun,
    enrolment: Enrolment,
    definition: SequenceDefinition,
    fact: ContactFact,
    now: datetime,
) -> str:
    session = claim.session
    if not await close_run(session, run, "done", "waited", now):
        await session.rollback()
        return "finished"
    following = await advance(session, enrolment, definition, fact, after=run.step_id, start=run.due_at)
    # The step after a wait is usually an email due the same instant. Running it here saves a Redis
    # job, and the email goes out without waiting for a job poll or the next sweep.
    chained: int | None = None
    if claim.due_next is not None and following is not None and following.due_at <= now:
        chained = following.id
        cancel_wakeup(session, chained)
    await session.commit()
    if chained is not None and claim.due_next is not None:
        claim.due_next.append(chained)
    return "waited"


# --- claim ------------------------------------------------------------------------------------------


async def _prepare_email(
    claim: _Claim,
    run: StepRun,
    enrolment: Enrolment,
    definition: SequenceDefinition,
    step: Step,
    fact: ContactFact,
    now: datetime,
) -> str | Delivery:
    assert step.email is not None
    runtime, session = claim.runtime, claim.session
    # Asked before any lock on the contact or the SQLite file is taken, so no other send waits on this call.
    verdict = await _consent_verdict(runtime, fact, step.email.topic)
    await claim.write()
    # Queue behind any other send to this contact, so the frequency cap counts every one of them.
    await session.exec(
        update(ContactFact)
        .where(col(ContactFact.contact_id) == enrolment.contact_id)
        .values(send_serial=col(ContactFact.send_serial) + 1)
        .execution_options(synchronize_session=False)
    )
    if dialect_of(session) != "postgresql":
        # SQLite read these rows before this transaction took the write lock; read them again.
        # PostgreSQL holds the step run's row lock and reads the latest commits in each statement.
        for row in (run, enrolment, fact):
            await session.refresh(row)
    if run.state != "scheduled":
        await session.rollback()
        return "finished"
    if enrolment.state != "active":
        await close_run(session, run, "cancelled", enrolment.exit_reason or enrolment.state, now)
        await session.commit()
        return "cancelled"

    message = (
        await session.exec(
            select(SentMessage).where(SentMessage.enrolment_id == enrolment.id, SentMessage.step_id == run.step_id)
        )
    ).first()
    if message is not None:
        return await _resume(runtime, session, run, enrolment, definition, step, fact, message, now)

    blocked = await _consent_blocks(session, run, enrolment, definition, step, fact, verdict, now)
    if blocked is not None:
        return blocked

    deferred = await _defer_if_needed(runtime, session, run, enrolment, definition, step, fact, now)
    if deferred is not None:
        return deferred
    return await _claim_new(runtime, session, run, enrolment, definition, step, fact, now)


@dataclass(frozen=True)
class ConsentVerdict:
    """Whether an email may go out: `overall` says why none may, `topic` why one of its topic may not."""

    overall: str | None = None
    topic: str | None = None


async def _consent_verdict(runtime: Runtime, fact: ContactFact, topic: str | None) -> ConsentVerdict:
    """Ask the contacts service whether the email may go out; use the local copy when it cannot answer."""
    local = ConsentVerdict(blocking_consent(fact), blocking_consent(fact, topic) if topic else None)
    if runtime.contacts is None or not runtime.contacts_breaker.closed():
        return local
    try:
        answer = await runtime.contacts.request(
            "GET", f"/contacts/{fact.contact_id}/sendability", params={"topic": topic} if topic else None
        )
    except Problem as problem:
        if problem.status == 404 and str(problem.to_body().get("type", "")).endswith("/not-found"):
            return ConsentVerdict(overall="contact_missing")
        if problem.status >= 500:
            runtime.contacts_breaker.trip()
        log.warning("consent.check_failed", contact_id=fact.contact_id, status=problem.status, detail=problem.detail)
        return local
    status, topic_status = answer.get("status"), answer.get("topic_status")
    return ConsentVerdict(
        overall=None if status == "subscribed" else str(status),
        topic=None if topic_status in (None, "subscribed") else str(topic_status),
    )


async def _consent_blocks(
    session: AsyncSession,
    run: StepRun,
    enrolment: Enrolment,
    definition: SequenceDefinition,
    step: Step,
    fact: ContactFact,
    verdict: ConsentVerdict,
    now: datetime,
) -> str | None:
    """End the enrolment when the contact may receive no email; skip the step when only its topic is refused."""
    assert step.email is not None
    if verdict.overall is not None:
        await exit_enrolment(session, enrolment, verdict.overall, now)
        await session.commit()
        return verdict.overall

    if verdict.topic is None:
        return None
    await close_run(session, run, "done", f"skipped_{verdict.topic}", now)
    await advance(session, enrolment, definition, fact, after=run.step_id, start=run.due_at)
    await session.commit()
    log.info("step.skipped", enrolment_id=enrolment.id, step_id=run.step_id, topic=step.email.topic, consent=verdict.topic)
    return "skipped"


async def _defer_if_needed(
    runtime: Runtime,
    session: AsyncSession,
    run: StepRun,
    enrolment: Enrolment,
    definition: SequenceDefinition,
    step: Step,
    fact: ContactFact,
    now: datetime,
) -> str | None:
    """Move the send later when the window, quiet hours or frequency cap forbid it now; never drop it."""
    assert step.email is not None
    late = now - run.due_at > timedelta(seconds=runtime.settings.late_send_grace_s)
    candidate = now if late else run.due_at
    cap = runtime.settings.frequency_cap()
    recent = await _recent_sends(session, enrolment.contact_id, candidate - cap.period) if cap else []
    zone = resolve_zone(fact.timezone, definition.timezone)
    try:
        send_at = earliest_send_at(
            candidate,
            zone,
            send_window=step.email.send_window,
            quiet_hours=definition.quiet_hours,
            cap=cap,
            recent_sends=recent,
        )
    except NoSendTimeError as error:
        log.error("step.no_send_time", enrolment_id=enrolment.id, step_id=run.step_id, error=str(error))
        await close_run(session, run, "failed", "no_send_time", now)
        await exit_enrolment(session, enrolment, "no_send_time", now)
        await session.commit()
        return "no_send_time"

    if send_at <= now:
        # The next step starts from the instant this one was due after its deferrals.
        run.due_at = send_at
        return None
    run.due_at = send_at
    run.wake_revision += 1
    wake_after_commit(session, Wakeup(run.id or 0, run.wake_revision, send_at))
    await session.commit()
    log.info("step.deferred", enrolment_id=enrolment.id, step_id=run.step_id, until=send_at.isoformat())
    return "deferred"


async def _recent_sends(session: AsyncSession, contact_id: str, since: datetime) -> list[datetime]:
    query = select(SentMessage.created_at).where(
        SentMessage.contact_id == contact_id,
        col(SentMessage.state).in_(COUNTED_BY_CAP),
        col(SentMessage.created_at) > since,
    )
    return list((await session.exec(query)).all())


async def _claim_new(
    runtime: Runtime,
    session: AsyncSession,
    run: StepRun,
    enrolment: Enrolment,
    definition: SequenceDefinition,
    step: Step,
    fact: ContactFact,
    now: datetime,
) -> str | Delivery:
    assert step.email is not None and fact.email is not None
    template = await session.get(Template, step.email.template_id)
    try:
        prepared = prepare_email(runtime, enrolment, run.step_id, step.email.template_id, template, fact, now)
    except (TemplateRenderError, TemplateValidationError, MessageBuildError) as error:
        log.error("step.render_failed", enrolment_id=enrolment.id, step_id=run.step_id, error=str(error))
        await close_run(session, run, "failed", "render_failed", now)
        await exit_enrolment(session, enrolment, "render_failed", now)
        await session.commit()
        return "render_failed"

    row_id = await insert_ignoring_conflict(session, SentMessage, prepared.row, returning=SentMessage.id)
    if row_id is None:
        await session.rollback()
        return "in_flight"
    delivery = Delivery(run.id or 0, row_id, prepared.row["message_id"], fact.email, prepared.email)
    return await _commit_claim(runtime, session, delivery)


@dataclass(frozen=True)
class PreparedEmail:
    """A rendered email of one step: the sent-message row to record and the MIME message to send."""

    row: dict[str, Any]
    email: Message


def prepare_email(
    runtime: Runtime,
    enrolment: Enrolment,
    step_id: str,
    template_id: str,
    template: Template | None,
    fact: ContactFact,
    now: datetime,
) -> PreparedEmail:
    """Render the template for the contact and build the message, under a new Message-ID.

    Raises:
        TemplateRenderError: the template is missing or fails to render.
        TemplateValidationError, MessageBuildError: the rendered email is invalid.
    """
    assert fact.email is not None
    if template is None:
        raise TemplateRenderError("html", f"template {template_id} does not exist")
    message_id = new_message_id(runtime.settings.message_id_domain)
    links = message_links(runtime, message_id, enrolment.contact_id, now)
    rendered = render_email(as_email_template(template), recipient(fact), links)
    email = build_email(
        runtime,
        message_id=message_id,
        recipient=fact.email,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        unsubscribe_url=links.unsubscribe_url(),
        created_at=now,
        enrolment_id=enrolment.id,
        step_id=step_id,
    )
    row = {
        "message_id": message_id,
        "enrolment_id": enrolment.id,
        "step_id": step_id,
        "sequence_id": enrolment.sequence_id,
        "version": enrolment.version,
        "contact_id": enrolment.contact_id,
        "template_id": template_id,
        "recipient": fact.email,
        "subject": rendered.subject,
        "html": rendered.html,
        "text": rendered.text,
        "state": "sending",
        "attempts": 0,
        "claimed_by": runtime.worker_id,
        "created_at": now,
        "status": "sending",
        "updated_at": now,
    }
    return PreparedEmail(row, email)


async def _commit_claim(runtime: Runtime, session: AsyncSession, delivery: Delivery) -> Delivery:
    runtime.in_flight.add(delivery.message_row_id)
    try:
        await session.commit()
    except BaseException:
        runtime.in_flight.discard(delivery.message_row_id)
        raise
    return delivery


def message_links(runtime: Runtime, message_id: str, contact_id: str, created_at: datetime) -> TrackingLinks:
    # The issue time is the send's record time, so a resend after a crash carries the same links.
    return tracking_links(
        runtime.signer,
        runtime.settings.public_base_url,
        message_id=message_id,
        contact_id=contact_id,
        issued_at=int(created_at.timestamp()),
    )


def build_email(
    runtime: Runtime,
    *,
    message_id: str,
    recipient: str,
    subject: str,
    html: str,
    text: str,
    unsubscribe_url: str,
    created_at: datetime,
    enrolment_id: str,
    step_id: str,
) -> Message:
    return build_message(
        sender=runtime.settings.from_address,
        recipient=recipient,
        subject=subject,
        text=text,
        html=html,
        message_id=message_id,
        unsubscribe_url=unsubscribe_url,
        sent_at=created_at,
        extra_headers={"X-Nurture-Enrolment": enrolment_id, "X-Nurture-Step": step_id},
    )


def _rebuild(runtime: Runtime, message: SentMessage) -> Message:
    """Build a stored message again, byte for byte the same apart from encoding choices."""
    links = message_links(runtime, message.message_id, message.contact_id, message.created_at)
    return build_email(
        runtime,
        message_id=message.message_id,
        recipient=message.recipient,
        subject=message.subject,
        html=message.html,
        text=message.text,
        unsubscribe_url=links.unsubscribe_url(),
        created_at=message.created_at,
        enrolment_id=message.enrolment_id,
        step_id=message.step_id,
    )


# --- resume -----------------------------------------------------------------------------------------


async def _claimer_alive(runtime: Runtime, session: AsyncSession, message: SentMessage) -> bool:
    if message.claimed_by is None:
        return False
    if message.claimed_by == runtime.worker_id:
        return message.id in runtime.in_flight
    heartbeat = await session.get(WorkerHeartbeat, message.claimed_by)
    return heartbeat is not None and heartbeat.beat_at >= runtime.stale_before()


async def _resume(
    runtime: Runtime,
    session: AsyncSession,
    run: StepRun,
    enrolment: Enrolment,
    definition: SequenceDefinition,
    step: Step,
    fact: ContactFact,
    message: SentMessage,
    now: datetime,
) -> str | Delivery:
    """Continue a send a previous run began: wait for a live worker, retry, or take over a dead one's."""
    if message.state in IN_PROGRESS and await _claimer_alive(runtime, session, message):
        await session.rollback()
        return "in_flight"

    if message.state == "awaiting_reply":
        reason = "the sending worker died while handing the message over"
        outcome = await record_unconfirmed(runtime, session, run, enrolment, definition, fact, message, reason, now)
        await session.commit()
        return outcome

    if message.state == "retrying":
        blocked = blocking_consent(fact, step.email.topic if step.email else None)
        if blocked is not None:
            message.state = "cancelled"
            await refresh_status(session, message)
            await close_run(session, run, "done", f"cancelled_{blocked}", now)
            await exit_enrolment(session, enrolment, blocked, now)
            await session.commit()
            return blocked
    elif message.state != "sending":
        # The outcome transaction closes the step run together with the message, so this is left
        # only by a change made outside the sequencer.
        log.warning("message.state_unexpected", message_id=message.message_id, state=message.state, step_run_id=run.id)
        await session.rollback()
        return "inconsistent"

    previous = message.claimed_by
    log.info("message.claimed", message_id=message.message_id, previous_worker=previous, state=message.state)
    message.state = "sending"
    message.claimed_by = runtime.worker_id
    message.updated_at = now
    delivery = Delivery(run.id or 0, message.id or 0, message.message_id, message.recipient, _rebuild(runtime, message))
    return await _commit_claim(runtime, session, delivery)


# --- hand-over and outcome --------------------------------------------------------------------------


async def _deliver(runtime: Runtime, delivery: Delivery, connection: AsyncConnection) -> str:
    handing_over = False

    async def before_final_dot() -> bool:
        nonlocal handing_over
        handing_over = True
        return await _hand_over(runtime, delivery)

    # The SMTP transaction runs in a task of its own, as in a batch, so that a stopping worker can
    # let a send whose hand-over may be committed write its final dot instead of losing the message.
    sending = asyncio.ensure_future(
        runtime.smtp.send(delivery.email, sender=runtime.envelope_sender, recipient=delivery.recipient, before_final_dot=before_final_dot)
    )
    try:
        result = await asyncio.shield(sending)
        if result.outcome is None:
            return "lost_claim"
        return await record_outcome(runtime, delivery, result, connection)
    except asyncio.CancelledError:
        if handing_over:
            # The message may be recorded `awaiting_reply`, so the send finishes, and the next run
            # of the step takes the message as sent.
            track(sending)
        else:
            # Release a claim that has not reached the final dot, so another worker sends the
            # message now instead of waiting for this one's heartbeat to go stale.
            sending.cancel()
            await asyncio.shield(release_claim(runtime, delivery))
        raise
    finally:
        runtime.in_flight.discard(delivery.message_row_id)


# Claim releases and handed-over sends that outlive a cancelled step, which a stopping worker waits for.
releasing: set[asyncio.Future[Any]] = set()


def track(task: "asyncio.Future[Any]") -> None:
    """Keep a task that must outlive its cancelled step or batch, so that a stopping worker waits for it."""
    releasing.add(task)
    task.add_done_callback(releasing.discard)


async def release_claim(runtime: Runtime, delivery: Delivery) -> None:
    async with runtime.db.session() as session:
        await session.exec(
            update(SentMessage)
            .where(
                col(SentMessage.id) == delivery.message_row_id,
                col(SentMessage.claimed_by) == runtime.worker_id,
                col(SentMessage.state) == "sending",
            )
            .values(claimed_by=None, updated_at=clock.now())
        )
        await session.commit()


async def _hand_over(runtime: Runtime, delivery: Delivery) -> bool:
    """Record that the server may hold the message from now on; False when the claim was lost.

    The update runs on a connection of its own, in autocommit mode. A stopping worker lets a send
    whose hand-over began finish, while the step's connection closes as the step is cancelled: on
    that connection the hand-over could commit and then fail, and its message was never sent. The
    connection is returned in the background, because a worker killed between this commit and the
    final dot loses the message (it counts as sent), so nothing else should wait in between.
    """
    statement = (
        update(SentMessage)
        .where(
            col(SentMessage.id) == delivery.message_row_id,
            col(SentMessage.claimed_by) == runtime.worker_id,
            col(SentMessage.state) == "sending",
        )
        .values(state="awaiting_reply", updated_at=clock.now())
    )
    # The write lock comes before the connection. Hand-overs waiting for the lock then hold no
    # connection, so the task with the lock, such as a heartbeat, finds one in the pool.
    async with runtime.writing():
        connection = await runtime.db.engine.connect()
        try:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            result = await autocommit.execute(statement)
        except BaseException:
            await asyncio.shield(connection.close())
            raise
    closing = asyncio.get_running_loop().create_task(connection.close())
    _closing.add(closing)
    closing.add_done_callback(_closing.discard)
    return bool(result.rowcount)


async def record_outcome(runtime: Runtime, delivery: Delivery, result: SendResult, connection: AsyncConnection) -> str:
    """Write the SMTP outcome, trying again on database errors, because the server's reply must not be lost."""
    for attempt in range(1, OUTCOME_WRITE_TRIES + 1):
        try:
            # A retry takes a fresh connection from the pool, in case the error broke this one.
            session = AsyncSession(bind=connection, expire_on_commit=False) if attempt == 1 else runtime.db.sessions()
            return await _write_outcome(runtime, delivery, result, session)
        except (DBAPIError, OSError, Unavailable) as error:
            if attempt == OUTCOME_WRITE_TRIES:
                log.error("message.outcome_not_recorded", message_id=delivery.message_id, error=repr(error))
                raise
            log.warning("message.outcome_retry", message_id=delivery.message_id, error=repr(error))
    raise AssertionError("unreachable")


async def _write_outcome(runtime: Runtime, delivery: Delivery, result: SendResult, session: AsyncSession) -> str:
    assert result.outcome is not None
    async with runtime.writing(), session:
        attach_queue(session, runtime.redis, runtime.settings.namespace)
        run = (await session.exec(locked(select(StepRun).where(StepRun.id == delivery.step_run_id), session))).first()
        message = (
            await session.exec(locked(select(SentMessage).where(SentMessage.id == delivery.message_row_id), session))
        ).first()
        if run is None or message is None:
            log.info("message.erased_while_sending", message_id=delivery.message_id)
            return "erased"
        if message.claimed_by != runtime.worker_id or message.state not in IN_PROGRESS:
            log.warning("message.claim_lost", message_id=message.message_id, claimed_by=message.claimed_by)
            return "lost_claim"

        now = clock.now()
        enrolment, _, version = await enrolment_of(session, run)
        definition = definition_of(version)
        fact = await get_facts(session, enrolment.contact_id)
        message.attempts += 1
        message.smtp_code = result.outcome.code
        message.smtp_status = result.outcome.enhanced_status

        if result.outcome.kind is SmtpOutcomeKind.ACCEPTED:
            outcome = await _accepted(runtime, session, run, enrolment, definition, fact, message, now, outcome="sent")
        elif result.outcome.kind is SmtpOutcomeKind.UNCONFIRMED:
            outcome = await record_unconfirmed(runtime, session, run, enrolment, definition, fact, message, result.reply, now)
        elif result.outcome.kind is SmtpOutcomeKind.PERMANENT:
            outcome = await record_rejection(runtime, session, run, enrolment, message, result.reply, now)
        else:
            outcome = await record_temporary_failure(runtime, session, run, enrolment, definition, fact, message, result.reply, now)
        await session.commit()
    log.info("message.outcome", message_id=delivery.message_id, outcome=outcome, reply=result.reply[:120])
    return outcome


async def _accepted(
    runtime: Runtime,
    session: AsyncSession,
    run: StepRun,
    enrolment: Enrolment,
    definition: SequenceDefinition,
    fact: ContactFact | None,
    message: SentMessage,
    now: datetime,
    *,
    outcome: str,
) -> str:
    message.state = "sent"
    message.sent_at = now
    message.claimed_by = None
    message.next_attempt_at = None
    await refresh_status(session, message)
    publish_email_event(runtime, session, message, "email_sent", now)
    await _complete_step(session, run, enrolment, definition, fact, outcome, now)
    return outcome


async def record_unconfirmed(
    runtime: Runtime,
    session: AsyncSession,
    run: StepRun,
    enrolment: Enrolment,
    definition: SequenceDefinition,
    fact: ContactFact | None,
    message: SentMessage,
    reason: str,
    now: datetime,
) -> str:
    """Record as sent a message that the server may hold without having replied, so it is never sent again.

    A second copy would reach the recipient whenever the server kept the first. The step run ends
    with the outcome `sent_unconfirmed`, the enrolment goes on, and `last_error` keeps `reason`.
    """
    log.warning(
        "message.outcome_unknown",
        message_id=message.message_id,
        step_run_id=run.id,
        enrolment_id=enrolment.id,
        claimed_by=message.claimed_by,
        reason=reason[:200],
    )
    message.last_error = f"{reason}; the server may hold the message"[:500]
    return await _accepted(runtime, session, run, enrolment, definition, fact, message, now, outcome="sent_unconfirmed")


async def record_rejection(
    runtime: Runtime,
    session: AsyncSession,
    run: StepRun,
    enrolment: Enrolment,
    message: SentMessage,
    reply: str,
    now: datetime,
) -> str:
    """Record a permanent refusal: the message failed, it counts as a bounce, and the contact leaves the sequence."""
    message.state = "failed_permanent"
    message.failed_at = now
    message.claimed_by = None
    message.last_error = reply[:500]
    await refresh_status(session, message)
    publish_email_event(runtime, session, message, "email_bounced", now, bounce_type="hard", source="smtp", reply=reply[:200])
    await close_run(session, run, "done", "failed_permanent", now)
    await exit_enrolment(session, enrolment, "bounced", now)
    return "failed_permanent"


async def record_temporary_failure(
    runtime: Runtime,
    session: AsyncSession,
    run: StepRun,
    enrolment: Enrolment,
    definition: SequenceDefinition,
    fact: ContactFact | None,
    message: SentMessage,
    reply: str,
    now: datetime,
) -> str:
    """Record a temporary failure: try again after the backoff, or give the email up after the last attempt."""
    message.claimed_by = None
    message.last_error = reply[:500]
    next_attempt = runtime.settings.retry_policy().next_attempt_at(message.attempts, now)
    if next_attempt is None:
        message.state = "failed_temporary"
        message.failed_at = now
        await refresh_status(session, message)
        await _complete_step(session, run, enrolment, definition, fact, "failed_temporary", now)
        return "failed_temporary"

    message.state = "retrying"
    message.next_attempt_at = next_attempt
    await refresh_status(session, message)
    run.due_at = next_attempt
    run.wake_revision += 1
    wake_after_commit(session, Wakeup(run.id or 0, run.wake_revision, next_attempt))
    return "retrying"


async def _complete_step(
    session: AsyncSession,
    run: StepRun,
    enrolment: Enrolment,
    definition: SequenceDefinition,
    fact: ContactFact | None,
    outcome: str,
    now: datetime,
) -> None:
    """Finish the step run and schedule the next step, unless the contact left the sequence meanwhile."""
    if not await close_run(session, run, "done", outcome, now):
        return
    if enrolment.state == "active":
        await advance(session, enrolment, definition, fact, after=run.step_id, start=run.due_at)


def publish_email_event(runtime: Runtime, session: AsyncSession, message: SentMessage, kind: str, at: datetime, **extra: str) -> None:
    """Tell the contacts service what the timeline should show about this email."""
    event_id = hashlib.sha256(f"{message.message_id}:{kind}".encode()).hexdigest()[:32]
    properties = {
        "message_id": message.message_id,
        "sequence_id": message.sequence_id,
        "step_id": message.step_id,
        "subject": message.subject,
        **extra,
    }
    runtime.outbox.publish(
        session,
        EMAIL_ENGAGEMENT,
        EmailEngagement(event_id=event_id, contact_id=message.contact_id, type=kind, occurred_at=at, properties=properties),
    )


__all__ = ["Delivery", "run_step"]
