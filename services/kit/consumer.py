"""The consuming side of events: arq job functions of every service, idempotent on the event id.

`consume_events` takes a batch of events in one transaction: it records every event id in
`processed_event`, skipping the events the service has already applied, runs the handler of each
new event's topic in order and commits, all at once. A second delivery of the same event therefore
changes nothing. When the batch fails, each event is applied again in a transaction of its own, so
one bad event holds back only itself. Failures are retried with backoff, because a database or
another service being briefly away must not drop an accepted event. `consume_event` applies a
single event the same way; the relay enqueued one job per event before it batched them.

A process applies one batch at a time. A batch holds the locks of all its contacts until it commits,
and two batches of one process waiting on each other's contacts would wait for ever on the
in-process locks. Between processes the database detects such a deadlock and aborts one of them.
"""

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, NoReturn

from arq import Retry
from arq.worker import Function, func
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.contracts import EventEnvelope
from services.kit.correlation import correlation_id_var
from services.kit.db import Database, insert_new
from services.kit.logging import get_logger
from services.kit.outbox import CONSUME_EVENT_JOB, CONSUME_EVENTS_JOB, ProcessedEventColumns

Handler = Callable[[AsyncSession, EventEnvelope, dict[str, Any]], Awaitable[None]]
# A hook run in a batch's transaction after its last handler, for work the handlers of a batch share.
BatchHook = Callable[[AsyncSession, dict[str, Any]], Awaitable[None]]
# A hook run in a batch's transaction before its first handler, with the events not applied before, to
# read at once what the handlers would otherwise read event by event.
Prefetch = Callable[[AsyncSession, list[EventEnvelope], dict[str, Any]], Awaitable[None]]

MAX_TRIES = 12
# A batch takes seconds, not minutes, but a job's time also counts its wait for the batches before it in
# this process.
BATCH_TIMEOUT_S = 300
# Key set in a session's info while it applies a batch, so that handlers skip work meant for one event alone.
IN_BATCH = "consumer.in_batch"
# A dict in a session's info where handlers keep what stays the same for the whole batch.
BATCH_CACHE = "consumer.batch_cache"

log = get_logger(__name__)


def retry_delay_s(job_try: int) -> float:
    """Back off 0.5 s, 1 s, 2 s ... capped at one minute between tries."""
    return float(min(60.0, 0.5 * 2 ** max(0, job_try - 1)))


class EventConsumer:
    """Apply published events to one service's database exactly once."""

    def __init__(
        self,
        processed_model: type[ProcessedEventColumns],
        handlers: dict[str, Handler],
        *,
        prefetch: Prefetch | None = None,
        after_batch: BatchHook | None = None,
    ) -> None:
        self.processed_model = processed_model
        self.handlers = handlers
        self.prefetch = prefetch
        self.after_batch = after_batch
        # Batches that failed together and were applied event by event, since the process started.
        self.split_batches = 0
        self._batch_turn = asyncio.Lock()

    async def apply(self, db: Database, envelope: EventEnvelope, ctx: dict[str, Any]) -> str:
        """Apply one event in one transaction; return "applied", "duplicate" or "ignored"."""
        handler = self.handlers.get(envelope.topic)
        async with db.session() as session:
            if await session.get(self.processed_model, envelope.id) is not None:
                return "duplicate"

            if handler is not None:
                await handler(session, envelope, ctx)
            session.add(
                self.processed_model(event_id=envelope.id, topic=envelope.topic, processed_at=clock.now())
            )
            try:
                await session.commit()
            except IntegrityError:
                await session.rollback()
                if await session.get(self.processed_model, envelope.id) is None:
                    # A key of the handler's own rows broke, so the event was not applied: retry it.
                    raise
                # Another worker applied the same event first, so its commit is kept and ours is void.
                return "duplicate"
        return "applied" if handler is not None else "ignored"

    async def apply_batch(self, db: Database, envelopes: list[EventEnvelope], ctx: dict[str, Any]) -> Counter[str]:
        """Apply a batch in one transaction, or event by event if that fails; count the outcomes.

        Raises the first error of the event-by-event pass, after every other event was applied.
        """
        async with self._batch_turn:
            try:
                return await self._apply_together(db, envelopes, ctx)
            except Exception as error:  # noqa: BLE001 - any failure of the batch sends it down the slow path
                self.split_batches += 1
                log.warning("event.batch_split", events=len(envelopes), error=repr(error))

            outcomes: Counter[str] = Counter()
            first_error: Exception | None = None
            for envelope in envelopes:
                try:
                    outcomes[await self.apply(db, envelope, ctx)] += 1
                except Exception as error:  # noqa: BLE001 - the others still get applied; the job retries this one
                    log.warning("event.apply_failed", event_id=envelope.id, topic=envelope.topic, error=repr(error))
                    first_error = first_error or error
            if first_error is not None:
                raise first_error
            return outcomes

    async def _apply_together(self, db: Database, envelopes: list[EventEnvelope], ctx: dict[str, Any]) -> Counter[str]:
        outcomes: Counter[str] = Counter()
        async with db.session() as session:
            session.info[IN_BATCH] = True
            session.info[BATCH_CACHE] = {}
            now = clock.now()
            fresh = await self._mark_processed(session, envelopes, now)
            if self.prefetch is not None:
                await self.prefetch(session, [envelope for envelope in envelopes if envelope.id in fresh], ctx)
            for envelope in envelopes:
                # The outbox never puts an event twice in one job, but a job built by hand might.
                if envelope.id not in fresh:
                    outcomes["duplicate"] += 1
                    continue
                fresh.discard(envelope.id)

                handler = self.handlers.get(envelope.topic)
                if handler is not None:
                    correlation_id_var.set(envelope.correlation_id)
                    await handler(session, envelope, ctx)
                outcomes["applied" if handler is not None else "ignored"] += 1
            if self.after_batch is not None and outcomes["applied"]:
                await self.after_batch(session, ctx)
            await session.commit()
        return outcomes

    async def _mark_processed(self, session: AsyncSession, envelopes: list[EventEnvelope], now: datetime) -> set[str]:
        """Record the batch's events as processed first and return the ids that were not recorded before.

        One statement both finds the duplicates and writes the marks. A worker applying the same event
        at the same time waits on the row until this transaction ends, then skips it. The rows go in
        in id order, so two batches that share events wait on each other in one order only.
        """
        if not envelopes:
            return set()
        table = self.processed_model.__table__  # type: ignore[attr-defined]
        rows = {
            envelope.id: {"event_id": envelope.id, "topic": envelope.topic, "processed_at": now} for envelope in envelopes
        }
        inserted = await insert_new(session, table, [rows[event_id] for event_id in sorted(rows)], table.c.event_id)
        return {event_id for (event_id,) in inserted}

    def function(self) -> Function:
        """Return the arq job function `consume_event`, for single events."""
        return func(self.consume, name=CONSUME_EVENT_JOB, max_tries=MAX_TRIES, keep_result=3600)

    def batch_function(self) -> Function:
        """Return the arq job function `consume_events` that the outbox relay enqueues."""
        return func(
            self.consume_batch, name=CONSUME_EVENTS_JOB, max_tries=MAX_TRIES, keep_result=3600, timeout=BATCH_TIMEOUT_S
        )

    def functions(self) -> list[Function]:
        """Return both job functions; a worker registers both so that jobs of either kind find it."""
        return [self.function(), self.batch_function()]

    async def consume_batch(self, ctx: dict[str, Any], documents: list[dict[str, Any]]) -> dict[str, int]:
        """Run as the `consume_events` job: apply a batch of events, retrying with backoff on failure."""
        envelopes = [EventEnvelope.model_validate(document) for document in documents]
        job_try = int(ctx.get("job_try", 1))
        bound = log.bind(first_event_id=envelopes[0].id if envelopes else None, events=len(envelopes), job_try=job_try)
        try:
            outcomes = await self.apply_batch(ctx["db"], envelopes, ctx)
        except Exception as error:
            _retry_or_give_up(error, job_try, bound, "events")
        bound.debug("events.consumed", **outcomes)
        return dict(outcomes)

    async def consume(self, ctx: dict[str, Any], document: dict[str, Any]) -> str:
        """Run as the `consume_event` job: apply one event, retrying with backoff on failure."""
        envelope = EventEnvelope.model_validate(document)
        correlation_id_var.set(envelope.correlation_id)
        job_try = int(ctx.get("job_try", 1))
        bound = log.bind(event_id=envelope.id, topic=envelope.topic, job_try=job_try)
        try:
            outcome = await self.apply(ctx["db"], envelope, ctx)
        except Exception as error:
            _retry_or_give_up(error, job_try, bound, "event")
        bound.debug("event.consumed", outcome=outcome)
        return outcome


def _retry_or_give_up(error: Exception, job_try: int, bound: Any, name: str) -> NoReturn:
    """Raise arq's Retry with backoff for a failed try, or the error itself after the last try."""
    if job_try >= MAX_TRIES:
        bound.exception(f"{name}.failed")
        raise error
    delay = retry_delay_s(job_try)
    bound.warning(f"{name}.retry", error=repr(error), retry_in_s=delay)
    raise Retry(defer=delay) from error
