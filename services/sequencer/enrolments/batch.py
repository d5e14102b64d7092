"""Running many due step runs at once: one claim transaction, then hand-overs and outcomes in groups.

A batch keeps the guarantees of `runner`: a message is recorded `sending` before SMTP is called,
`awaiting_reply` before its final dot, and its outcome after the server's reply. What changes is
how many rows each statement carries. The claim locks the batch's step runs and reads their
enrolments, facts and earlier messages with a few statements, requests consent verdicts from the
contacts service once per topic, ends the waits and records every email in one transaction. The hand-overs
of the emails that reach their final dot together are committed together, and so are their
outcomes.

Only the common cases run here: a wait that ends, and the first attempt at an email that may go out
now. A step that needs more (a deferral, a retry, a send to resume, a goal reached, consent refused,
a template that fails, a contact to copy) is handed back to run alone through `runner.run_step`,
which handles every case.
"""

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import Message
from typing import Any, Generic, TypeVar

from sqlalchemy import and_, or_, update
from sqlalchemy.orm import defer
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.db import insert_new
from services.kit.logging import get_logger
from services.kit.problems import Problem
from services.sequencer.dbutil import dialect_of, locked
from services.sequencer.engagement.models import MessageEvent
from services.sequencer.engagement.recording import apply_status
from services.sequencer.engagement.status import EventFact, derive_status
from services.sequencer.enrolments.models import Enrolment, StepRun
from services.sequencer.enrolments.runner import (
    COUNTED_BY_CAP,
    IN_PROGRESS,
    Delivery,
    PreparedEmail,
    prepare_email,
    publish_email_event,
    record_outcome,
    record_rejection,
    record_temporary_failure,
    record_unconfirmed,
    release_claim,
    releasing,
    track,
)
from services.sequencer.enrolments.runtime import Runtime
from services.sequencer.enrolments.service import Move, advance_many, goal_met
from services.sequencer.enrolments.wakeups import attach_queue, cancel_wakeup
from services.sequencer.facts.models import ContactFact
from services.sequencer.facts.service import blocking_consent
from services.sequencer.schedule import NoSendTimeError, earliest_send_at, resolve_zone
from services.sequencer.sending import MessageBuildError
from services.sequencer.sending.models import SentMessage
from services.sequencer.sending.outcome import SmtpOutcomeKind
from services.sequencer.sending.smtp import SendResult
from services.sequencer.sequences import SequenceDefinition, Step
from services.sequencer.sequences.models import Sequence, SequenceVersion
from services.sequencer.sequences.store import definition_of
from services.sequencer.templates import TemplateRenderError, TemplateValidationError
from services.sequencer.templates.models import Template

# The contacts service accepts at most this many contacts per sendability request.
CONSENT_QUERY_SIZE = 500

# How many outcomes of sent emails make a full group, written without waiting for more.
OUTCOME_GROUP_SIZE = 64

log = get_logger(__name__)


@dataclass
class BatchResult:
    """The result of a batch: the outcome of each step run it finished, and the ones to run alone.

    `chained` contains the step runs that the batch's waits scheduled for now, which the caller runs
    next instead of leaving them to a wake-up job.
    """

    outcomes: dict[int, str] = field(default_factory=dict)
    alone: list[int] = field(default_factory=list)
    chained: list[int] = field(default_factory=list)


@dataclass
class _Due:
    """A locked, due step run with everything the batch needs to decide it."""

    run: StepRun
    enrolment: Enrolment
    definition: SequenceDefinition
    step: Step
    fact: ContactFact


async def run_batch(runtime: Runtime, step_run_ids: list[int]) -> BatchResult:
    """Run the common cases among `step_run_ids` together, and return the others in `alone`."""
    result = BatchResult()
    try:
        deliveries = await _claim(runtime, step_run_ids, result)
    except Exception as error:  # noqa: BLE001 - the batch rolled back; each step runs alone instead
        log.warning("batch.claim_failed", step_runs=len(step_run_ids), error=repr(error))
        return BatchResult(alone=list(step_run_ids))

    if deliveries:
        groups = _groups_of(runtime)
        outcomes = await asyncio.gather(*(_deliver(runtime, groups, delivery) for delivery in deliveries))
        for delivery, outcome in zip(deliveries, outcomes, strict=True):
            result.outcomes[delivery.step_run_id] = outcome
    return result


# --- claim ------------------------------------------------------------------------------------------


async def _claim(runtime: Runtime, step_run_ids: list[int], result: BatchResult) -> list[Delivery]:
    verdicts = await _consent_verdicts(runtime, step_run_ids)
    async with runtime.writing(), runtime.db.session() as session:
        attach_queue(session, runtime.redis, runtime.settings.namespace)
        now = clock.now()
        due = await _lock_due(session, step_run_ids, now, result)
        waits = [item for item in due if item.step.wait is not None]
        emails = [item for item in due if item.step.email is not None]

        await _end_waits(session, waits, now, result)
        deliveries = await _claim_emails(runtime, session, emails, verdicts, now, result)

        runtime.in_flight.update(delivery.message_row_id for delivery in deliveries)
        try:
            await session.commit()
        except BaseException:
            runtime.in_flight.difference_update(delivery.message_row_id for delivery in deliveries)
            raise
    return deliveries


async def _load(
    session: AsyncSession, step_run_ids: Iterable[int], *, lock: bool, skip_locked: bool = False
) -> tuple[list[StepRun], dict[str, tuple[Enrolment, Sequence, SequenceVersion]]]:
    """Read step runs, locked with `lock`, and their enrolments, sequences and versions."""
    query = select(StepRun).where(col(StepRun.id).in_(sorted(step_run_ids))).order_by(col(StepRun.id))
    if lock:
        query = locked(query, session, skip_locked=skip_locked)
    runs = list((await session.exec(query)).all())
    enrolment_ids = sorted({run.enrolment_id for run in runs})
    if not enrolment_ids:
        return runs, {}

    # The enrolments of a batch follow a few sequence versions, so those are read once each rather
    # than joined to every enrolment, which decoded a version's definition once per row.
    enrolments = (await session.exec(select(Enrolment).where(col(Enrolment.id).in_(enrolment_ids)))).all()
    followed = sorted({(enrolment.sequence_id, enrolment.version) for enrolment in enrolments})
    sequences = await _sequences(session, sorted({sequence_id for sequence_id, _ in followed}))
    versions = await _versions(session, followed)
    loaded: dict[str, tuple[Enrolment, Sequence, SequenceVersion]] = {}
    for enrolment in enrolments:
        sequence, version = sequences.get(enrolment.sequence_id), versions.get((enrolment.sequence_id, enrolment.version))
        if sequence is not None and version is not None:
            loaded[enrolment.id] = (enrolment, sequence, version)
    return runs, loaded


async def _sequences(session: AsyncSession, sequence_ids: list[str]) -> dict[str, Sequence]:
    rows = (await session.exec(select(Sequence).where(col(Sequence.id).in_(sequence_ids)))).all()
    return {sequence.id: sequence for sequence in rows}


async def _versions(session: AsyncSession, followed: list[tuple[str, int]]) -> dict[tuple[str, int], SequenceVersion]:
    if not followed:
        return {}
    conditions = [
        and_(col(SequenceVersion.sequence_id) == sequence_id, col(SequenceVersion.version) == number)
        for sequence_id, number in followed
    ]
    rows = (await session.exec(select(SequenceVersion).where(or_(*conditions)))).all()
    return {(version.sequence_id, version.version): version for version in rows}


async def _lock_due(session: AsyncSession, step_run_ids: list[int], now: datetime, result: BatchResult) -> list[_Due]:
    """Lock the due step runs and sort out the ones a batch can run; the others go to `result`."""
    # A step run locked by another worker is skipped, because that worker is running it.
    runs, enrolments = await _load(session, step_run_ids, lock=True, skip_locked=True)
    found = {run.id for run in runs}
    for step_run_id in step_run_ids:
        if step_run_id not in found:
            result.outcomes[step_run_id] = "busy"

    contact_ids = sorted({enrolments[run.enrolment_id][0].contact_id for run in runs if run.enrolment_id in enrolments})
    facts = await _lock_facts(session, contact_ids)
    due: list[_Due] = []
    emailed: set[str] = set()
    for run in runs:
        run_id = run.id or 0
        if run.state != "scheduled":
            result.outcomes[run_id] = "finished"
            continue
        if run.due_at > now:
            result.outcomes[run_id] = "not_due"
            continue

        if run.enrolment_id not in enrolments:
            result.alone.append(run_id)
            continue
        enrolment, sequence, version = enrolments[run.enrolment_id]
        definition = definition_of(version)
        step = definition.step(run.step_id)
        fact = facts.get(enrolment.contact_id)
        # Cancelling, pausing, copying a contact and reaching a goal are the single run's cases.
        if enrolment.state != "active" or sequence.status != "active" or fact is None or not fact.email:
            result.alone.append(run_id)
            continue
        if goal_met(definition, fact):
            result.alone.append(run_id)
            continue
        if step.email is not None:
            # A second email to one contact runs after this batch, so its frequency cap counts the first.
            if enrolment.contact_id in emailed:
                result.alone.append(run_id)
                continue
            emailed.add(enrolment.contact_id)
        due.append(_Due(run, enrolment, definition, step, fact))
    return due


async def _lock_facts(session: AsyncSession, contact_ids: list[str]) -> dict[str, ContactFact]:
    """Read and lock the contacts' facts in one order, so two batches sharing contacts queue instead of deadlocking.

    Holding a contact's row also makes any single send to the contact wait, as its frequency cap must.
    """
    if not contact_ids:
        return {}
    query = select(ContactFact).where(col(ContactFact.contact_id).in_(contact_ids)).order_by(col(ContactFact.contact_id))
    rows = (await session.exec(locked(query, session))).all()
    if rows and dialect_of(session) == "postgresql":
        await session.exec(
            update(ContactFact)
            .where(col(ContactFact.contact_id).in_([row.contact_id for row in rows]))
            .values(send_serial=col(ContactFact.send_serial) + 1)
            .execution_options(synchronize_session=False)
        )
    return {row.contact_id: row for row in rows}


async def _end_waits(session: AsyncSession, waits: list[_Due], now: datetime, result: BatchResult) -> None:
    """Close the waits with one statement, then schedule the step after each."""
    closed = await _close_runs(session, [item.run for item in waits], "done", "waited", now)
    ended: list[_Due] = []
    for item in waits:
        run_id = item.run.id or 0
        result.outcomes[run_id] = "waited" if run_id in closed else "finished"
        if run_id in closed:
            ended.append(item)

    moves = [Move(item.enrolment, item.definition, item.fact, item.run.step_id, item.run.due_at) for item in ended]
    for following in await advance_many(session, moves):
        if following is not None and following.due_at <= now:
            cancel_wakeup(session, following.id)
            result.chained.append(following.id)


async def _close_runs(session: AsyncSession, runs: list[StepRun], state: str, outcome: str, now: datetime) -> set[int]:
    """Move scheduled runs to a final state with one statement, and return the ids this call closed."""
    if not runs:
        return set()
    statement = (
        update(StepRun)
        .where(col(StepRun.id).in_([run.id for run in runs]), col(StepRun.state) == "scheduled")
        .values(state=state, outcome=outcome[:64], finished_at=now)
        .returning(col(StepRun.id))
        .execution_options(synchronize_session=False)
    )
    closed = {row for row in (await session.exec(statement)).scalars()}  # type: ignore[call-overload]
    for run in runs:
        if run.id in closed:
            # The statement wrote these; setting them as committed keeps the flush from writing them again.
            set_committed_value(run, "state", state)
            set_committed_value(run, "outcome", outcome[:64])
            set_committed_value(run, "finished_at", now)
    return closed


# --- consent ----------------------------------------------------------------------------------------


async def _consent_verdicts(runtime: Runtime, step_run_ids: list[int]) -> dict[tuple[str, str | None], bool] | None:
    """Ask the contacts service, once per topic, which of the batch's contacts may be emailed now.

    The keys are (contact, topic). A contact without a verdict (the request failed, or the contact is
    unknown there) has no key, and its email runs alone, which decides on the local copy or exits the
    enrolment. None means the local copy decides for all: there is no contacts service, or it failed
    a moment ago. This runs before any lock is taken, as the single run does, so no send waits on it.
    """
    if runtime.contacts is None or not runtime.contacts_breaker.closed():
        return None
    async with runtime.db.session() as session:
        runs, enrolments = await _load(session, step_run_ids, lock=False)
    by_topic: dict[str | None, set[str]] = {}
    for run in runs:
        if run.enrolment_id not in enrolments:
            continue
        enrolment, _, version = enrolments[run.enrolment_id]
        step = definition_of(version).step(run.step_id)
        if step.email is not None:
            by_topic.setdefault(step.email.topic, set()).add(enrolment.contact_id)

    verdicts: dict[tuple[str, str | None], bool] = {}
    for topic, contact_ids in by_topic.items():
        ordered = sorted(contact_ids)
        for start in range(0, len(ordered), CONSENT_QUERY_SIZE):
            body: dict[str, Any] = {"contact_ids": ordered[start : start + CONSENT_QUERY_SIZE], "topic": topic}
            try:
                answer = await runtime.contacts.request("POST", "/contacts/sendability", json=body)
            except Problem as problem:
                if problem.status >= 500:
                    runtime.contacts_breaker.trip()
                log.warning("consent.batch_check_failed", contacts=len(body["contact_ids"]), status=problem.status)
                return verdicts
            for verdict in answer.get("contacts", []):
                verdicts[(str(verdict["contact_id"]), topic)] = verdict.get("sendable") is True
    return verdicts


# --- emails -----------------------------------------------------------------------------------------


async def _claim_emails(
    runtime: Runtime,
    session: AsyncSession,
    emails: list[_Due],
    verdicts: dict[tuple[str, str | None], bool] | None,
    now: datetime,
    result: BatchResult,
) -> list[Delivery]:
    """Record a `sending` message for each email that may go out now; hand every other one back."""
    begun = await _begun_sends(session, emails)
    recent = await _recent_sends(runtime, session, emails, now)
    templates: dict[str, Template | None] = {}
    rows: list[dict[str, Any]] = []
    prepared: dict[str, tuple[_Due, str, Message]] = {}

    for item in emails:
        run_id = item.run.id or 0
        email = item.step.email
        assert email is not None
        contact_id = item.enrolment.contact_id
        if verdicts is None:
            sendable = blocking_consent(item.fact) is None and blocking_consent(item.fact, email.topic) is None
        else:
            sendable = verdicts.get((contact_id, email.topic)) is True
        # A refusal, a send begun before and a deferral are the single run's cases.
        if not sendable or (item.enrolment.id, item.run.step_id) in begun:
            result.alone.append(run_id)
            continue
        if not _send_now(runtime, item, recent.get(contact_id, []), now):
            result.alone.append(run_id)
            continue
        if email.template_id not in templates:
            templates[email.template_id] = await session.get(Template, email.template_id)
        built = _render(runtime, item, templates[email.template_id], now)
        if built is None:
            result.alone.append(run_id)
            continue
        rows.append(built.row)
        prepared[item.enrolment.id] = (item, built.row["message_id"], built.email)

    inserted = await _insert_messages(session, rows)
    deliveries: list[Delivery] = []
    for enrolment_id, (item, message_id, message) in prepared.items():
        row_id = inserted.get(enrolment_id)
        if row_id is None:
            # Another worker recorded this send between our read and our insert.
            result.outcomes[item.run.id or 0] = "in_flight"
            continue
        deliveries.append(Delivery(item.run.id or 0, row_id, message_id, item.fact.email or "", message))
    return deliveries


async def _begun_sends(session: AsyncSession, emails: list[_Due]) -> set[tuple[str, str]]:
    """Return the (enrolment, step) pairs of the batch whose message exists already."""
    if not emails:
        return set()
    query = select(SentMessage.enrolment_id, SentMessage.step_id).where(
        col(SentMessage.enrolment_id).in_([item.enrolment.id for item in emails])
    )
    return {(enrolment_id, step_id) for enrolment_id, step_id in (await session.exec(query)).all()}


async def _recent_sends(runtime: Runtime, session: AsyncSession, emails: list[_Due], now: datetime) -> dict[str, list[datetime]]:
    """Return, by contact, when the messages that the frequency cap counts were recorded."""
    cap = runtime.settings.frequency_cap()
    if cap is None or not emails:
        return {}
    since = now - cap.period - timedelta(seconds=runtime.settings.late_send_grace_s)
    query = select(SentMessage.contact_id, SentMessage.created_at).where(
        col(SentMessage.contact_id).in_(sorted({item.enrolment.contact_id for item in emails})),
        col(SentMessage.state).in_(COUNTED_BY_CAP),
        col(SentMessage.created_at) > since,
    )
    recent: dict[str, list[datetime]] = {}
    for contact_id, created_at in (await session.exec(query)).all():
        recent.setdefault(contact_id, []).append(created_at)
    return recent


def _send_now(runtime: Runtime, item: _Due, recent: list[datetime], now: datetime) -> bool:
    """Return whether the window, quiet hours and frequency cap let the email go out now.

    When they do, the step's due time becomes the instant they allow, as in the single run, so the
    next step starts from it.
    """
    email = item.step.email
    assert email is not None
    late = now - item.run.due_at > timedelta(seconds=runtime.settings.late_send_grace_s)
    candidate = now if late else item.run.due_at
    cap = runtime.settings.frequency_cap()
    counted = [sent for sent in recent if cap is not None and sent > candidate - cap.period]
    zone = resolve_zone(item.fact.timezone, item.definition.timezone)
    try:
        send_at = earliest_send_at(
            candidate, zone, send_window=email.send_window, quiet_hours=item.definition.quiet_hours, cap=cap, recent_sends=counted
        )
    except NoSendTimeError:
        return False
    if send_at > now:
        return False
    if send_at != item.run.due_at:
        item.run.due_at = send_at
    return True


def _render(runtime: Runtime, item: _Due, template: Template | None, now: datetime) -> PreparedEmail | None:
    """Render and build one email; return None when that fails, so that the single run records why."""
    email = item.step.email
    assert email is not None
    try:
        return prepare_email(runtime, item.enrolment, item.run.step_id, email.template_id, template, item.fact, now)
    except (TemplateRenderError, TemplateValidationError, MessageBuildError):
        return None


async def _insert_messages(session: AsyncSession, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert the messages with one statement, skipping any that exists, and return the new row ids by enrolment."""
    table = SentMessage.__table__  # type: ignore[attr-defined]
    inserted = await insert_new(session, table, rows, table.c.id, table.c.enrolment_id)
    return {enrolment_id: row_id for row_id, enrolment_id in inserted}


# --- delivery ---------------------------------------------------------------------------------------


async def finish_releases(runtime: Runtime) -> None:
    """Wait until the claims of cancelled sends are released and the handed-over sends are finished.

    Then write the outcomes still waiting in their group. Without them a message would stay
    `awaiting_reply`, and the next run would take a rejected or deferred email for sent.
    """
    while releasing:
        await asyncio.gather(*list(releasing), return_exceptions=True)
    if isinstance(runtime.groups, _Groups):
        await runtime.groups.outcomes.flush()


async def _deliver(runtime: Runtime, groups: "_Groups", delivery: Delivery) -> str:
    """Send one claimed email, handing it over and recording its outcome together with the batch's others."""
    handing_over = False

    async def before_final_dot() -> bool:
        nonlocal handing_over
        handing_over = True
        return await groups.hand_overs.submit(delivery.message_row_id)

    # The SMTP transaction runs in a task of its own, so that a stopping worker can let a send whose
    # hand-over may be committed write its final dot instead of losing the message.
    sending = asyncio.ensure_future(
        runtime.smtp.send(delivery.email, sender=runtime.envelope_sender, recipient=delivery.recipient, before_final_dot=before_final_dot)
    )
    try:
        result = await asyncio.shield(sending)
        if result.outcome is None:
            return "lost_claim"
        return await groups.outcomes.submit((delivery, result))
    except asyncio.CancelledError:
        if handing_over:
            # The message may be recorded `awaiting_reply`, so the send finishes. Its outcome is not
            # written, and the next run of the step takes the message as sent.
            track(sending)
        else:
            # Release a claim that has not reached the final dot, so another worker sends the
            # message now instead of waiting for this one's heartbeat to go stale.
            sending.cancel()
            track(asyncio.ensure_future(release_claim(runtime, delivery)))
        raise
    except Exception as error:  # noqa: BLE001 - the message stays claimed; the next run of its step resolves it
        log.exception("message.delivery_failed", message_id=delivery.message_id, step_run_id=delivery.step_run_id, error=repr(error))
        return "error"
    finally:
        runtime.in_flight.discard(delivery.message_row_id)


Item = TypeVar("Item")
Answer = TypeVar("Answer")


class GroupCommit(Generic[Item, Answer]):
    """Write the items that arrive while a write is running in the next write, one transaction for all.

    The first item starts a write at once; items that arrive while it runs wait for the next one.
    So a quiet moment costs no delay, and a busy one makes the transactions larger instead of more.
    With `linger_s`, each write first waits that long for more items, unless `max_items` are
    already waiting. That suits writes no caller waits on, and makes their groups larger.
    """

    def __init__(
        self, write: Callable[[list[Item]], Awaitable[list[Answer]]], *, linger_s: float = 0.0, max_items: int = 0
    ) -> None:
        self._write = write
        self._linger_s = linger_s
        self._max_items = max_items
        self._waiting: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._full = asyncio.Event()
        self._flushing = False

    @property
    def pending(self) -> int:
        """The number of items waiting for a write."""
        return len(self._waiting)

    async def submit(self, item: Item) -> Answer:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._max_items and len(self._waiting) >= self._max_items:
            self._full.set()
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def flush(self) -> None:
        """Write the waiting items now, skipping the linger, and return once every write is done."""
        self._flushing = True
        self._full.set()
        try:
            while self._writer is not None:
                await asyncio.shield(self._writer)
        finally:
            self._flushing = False

    async def _drain(self) -> None:
        try:
            await self._gather()
            while self._waiting:
                group, self._waiting = self._waiting, []
                self._full.clear()
                try:
                    answers = await self._write([item for item, _ in group])
                except BaseException as error:
                    for _, future in group:
                        if not future.done():
                            future.set_exception(error)
                    if not isinstance(error, Exception):
                        raise
                    continue
                for (_, future), answer in zip(group, answers, strict=True):
                    if not future.done():
                        future.set_result(answer)
                if self._waiting:
                    await self._gather()
        finally:
            self._writer = None

    async def _gather(self) -> None:
        """Wait for the next write's items: those ready in this turn of the loop, then those of the linger."""
        await asyncio.sleep(0)
        if self._linger_s <= 0 or self._flushing or self._full.is_set():
            return
        try:
            await asyncio.wait_for(self._full.wait(), self._linger_s)
        except TimeoutError:
            pass


class _Groups:
    """The group commits of a process's batches: hand-overs before the final dot, and outcomes after the reply.

    The batches running at once share them, so their emails make larger transactions instead of more.
    """

    def __init__(self, runtime: Runtime, *, outcome_linger_s: float = 0.02) -> None:
        """Create the group commits. `outcome_linger_s` is how long an outcome waits for others to join its group."""
        self.hand_overs: GroupCommit[int, bool] = GroupCommit(lambda ids: _hand_over(runtime, ids))
        # An SMTP connection is free again before its outcome is written, so outcomes wait a little
        # to be written in larger groups, with fewer statements for each email.
        self.outcomes: GroupCommit[tuple[Delivery, SendResult], str] = GroupCommit(
            lambda items: _record_outcomes(runtime, items), linger_s=outcome_linger_s, max_items=OUTCOME_GROUP_SIZE
        )


def _groups_of(runtime: Runtime) -> _Groups:
    if runtime.groups is None:
        runtime.groups = _Groups(runtime)
    assert isinstance(runtime.groups, _Groups)
    return runtime.groups


async def _hand_over(runtime: Runtime, message_row_ids: list[int]) -> list[bool]:
    """Record that the server may hold these messages from now on, and return False for each lost claim.

    The hand-over is one statement, so it runs in autocommit mode. It is committed when it returns,
    and each group of final dots no longer waits for the round trips of BEGIN and COMMIT.
    """
    statement = (
        update(SentMessage)
        .where(
            col(SentMessage.id).in_(message_row_ids),
            col(SentMessage.claimed_by) == runtime.worker_id,
            col(SentMessage.state) == "sending",
        )
        .values(state="awaiting_reply", updated_at=clock.now())
        .returning(col(SentMessage.id))
    )
    async with runtime.writing(), runtime.db.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        handed = set((await autocommit.execute(statement)).scalars())
    return [row_id in handed for row_id in message_row_ids]


async def _record_outcomes(runtime: Runtime, items: list[tuple[Delivery, SendResult]]) -> list[str]:
    """Write the outcomes of many emails in one transaction, or each alone with retries after a database error.

    An outcome that cannot be written even alone leaves its message `awaiting_reply`, as in the
    single run, and the others of the group are still written.
    """
    try:
        return await _write_outcomes(runtime, items)
    except Exception as error:  # noqa: BLE001 - the group rolled back; each outcome is written alone instead
        log.warning("batch.outcomes_failed", messages=len(items), error=repr(error))
    answers: list[str] = []
    for delivery, result in items:
        try:
            async with runtime.db.engine.connect() as connection:
                answers.append(await record_outcome(runtime, delivery, result, connection))
        except Exception as error:  # noqa: BLE001 - logged by record_outcome; the next run resolves the message
            log.error("message.outcome_lost", message_id=delivery.message_id, error=repr(error))
            answers.append("error")
    return answers


async def _write_outcomes(runtime: Runtime, items: list[tuple[Delivery, SendResult]]) -> list[str]:
    """Record each reply as the single run does, closing the accepted emails' step runs with one statement."""
    async with runtime.writing(), runtime.db.session() as session:
        attach_queue(session, runtime.redis, runtime.settings.namespace)
        runs, enrolments = await _load(session, [delivery.step_run_id for delivery, _ in items], lock=True)
        runs_by_id = {run.id: run for run in runs}
        message_ids = sorted(delivery.message_row_id for delivery, _ in items)
        # The bodies stay in the database: an outcome never reads them, and they are most of a row.
        message_query = (
            select(SentMessage)
            .where(col(SentMessage.id).in_(message_ids))
            .order_by(col(SentMessage.id))
            .options(defer(SentMessage.html, raiseload=True), defer(SentMessage.text, raiseload=True))  # type: ignore[arg-type]
        )
        messages = {message.id: message for message in (await session.exec(locked(message_query, session))).all()}
        facts = await _facts(session, {enrolment.contact_id for enrolment, _, _ in enrolments.values()})
        events = await _events_of(session, [message.message_id for message in messages.values()])

        now = clock.now()
        answers: list[str] = []
        accepted: list[tuple[StepRun, Enrolment, SequenceDefinition, ContactFact | None]] = []
        for delivery, result in items:
            assert result.outcome is not None
            run, message = runs_by_id.get(delivery.step_run_id), messages.get(delivery.message_row_id)
            if run is None or message is None or run.enrolment_id not in enrolments:
                log.info("message.erased_while_sending", message_id=delivery.message_id)
                answers.append("erased")
                continue
            if message.claimed_by != runtime.worker_id or message.state not in IN_PROGRESS:
                log.warning("message.claim_lost", message_id=message.message_id, claimed_by=message.claimed_by)
                answers.append("lost_claim")
                continue

            enrolment, _, version = enrolments[run.enrolment_id]
            definition = definition_of(version)
            fact = facts.get(enrolment.contact_id)
            message.attempts += 1
            message.smtp_code = result.outcome.code
            message.smtp_status = result.outcome.enhanced_status
            if result.outcome.kind is SmtpOutcomeKind.ACCEPTED:
                message.state = "sent"
                message.sent_at = now
                message.claimed_by = None
                message.next_attempt_at = None
                facts_of_message = [EventFact(e.type, e.occurred_at, e.verdict) for e in events.get(message.message_id, [])]
                apply_status(message, derive_status(message.state, facts_of_message))
                publish_email_event(runtime, session, message, "email_sent", now)
                accepted.append((run, enrolment, definition, fact))
                answers.append("sent")
            elif result.outcome.kind is SmtpOutcomeKind.UNCONFIRMED:
                # Rare, so its step run is closed alone, with its own outcome, and not with the accepted ones.
                answers.append(
                    await record_unconfirmed(runtime, session, run, enrolment, definition, fact, message, result.reply, now)
                )
            elif result.outcome.kind is SmtpOutcomeKind.PERMANENT:
                answers.append(await record_rejection(runtime, session, run, enrolment, message, result.reply, now))
            else:
                answers.append(
                    await record_temporary_failure(runtime, session, run, enrolment, definition, fact, message, result.reply, now)
                )
            log.info("message.outcome", message_id=delivery.message_id, outcome=answers[-1], reply=result.reply[:120])

        closed = await _close_runs(session, [run for run, _, _, _ in accepted], "done", "sent", now)
        moves = [
            Move(enrolment, definition, fact, run.step_id, run.due_at)
            for run, enrolment, definition, fact in accepted
            if run.id in closed and enrolment.state == "active"
        ]
        await advance_many(session, moves)
        await session.commit()
    return answers


async def _facts(session: AsyncSession, contact_ids: set[str]) -> dict[str, ContactFact]:
    if not contact_ids:
        return {}
    rows = (await session.exec(select(ContactFact).where(col(ContactFact.contact_id).in_(sorted(contact_ids))))).all()
    return {row.contact_id: row for row in rows}


async def _events_of(session: AsyncSession, message_ids: list[str]) -> dict[str, list[MessageEvent]]:
    """Return the events already stored for the messages (a provider can report before the outcome is written)."""
    events: dict[str, list[MessageEvent]] = {}
    if not message_ids:
        return events
    query = (
        select(MessageEvent)
        .where(col(MessageEvent.message_id).in_(message_ids))
        .order_by(col(MessageEvent.occurred_at), col(MessageEvent.id))
    )
    for event in (await session.exec(query)).all():
        events.setdefault(event.message_id, []).append(event)
    return events


__all__ = ["BatchResult", "GroupCommit", "finish_releases", "run_batch"]
