"""The consuming side of events: one arq job function per service, idempotent on the event id.

`consume_event` opens a transaction, skips an event the service has already applied, runs the
handler for the topic, records the event id in `processed_event` and commits, all at once. A second
delivery of the same event therefore changes nothing. Failures are retried with backoff, because a
database or another service being briefly away must not drop an accepted event.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from arq import Retry
from arq.worker import Function, func
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.contracts import EventEnvelope
from services.kit.correlation import correlation_id_var
from services.kit.db import Database
from services.kit.logging import get_logger
from services.kit.outbox import CONSUME_EVENT_JOB, ProcessedEventColumns

Handler = Callable[[AsyncSession, EventEnvelope, dict[str, Any]], Awaitable[None]]

MAX_TRIES = 12

log = get_logger(__name__)


def retry_delay_s(job_try: int) -> float:
    """Back off 0.5 s, 1 s, 2 s ... capped at one minute between tries."""
    return float(min(60.0, 0.5 * 2 ** max(0, job_try - 1)))


class EventConsumer:
    """Apply published events to one service's database exactly once."""

    def __init__(self, processed_model: type[ProcessedEventColumns], handlers: dict[str, Handler]) -> None:
        self.processed_model = processed_model
        self.handlers = handlers

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
                # Another worker applied the same event first; its commit stands and ours is void.
                await session.rollback()
                return "duplicate"
        return "applied" if handler is not None else "ignored"

    def function(self) -> Function:
        """Return the arq job function `consume_event` that the outbox relay enqueues."""
        return func(self.consume, name=CONSUME_EVENT_JOB, max_tries=MAX_TRIES, keep_result=3600)

    async def consume(self, ctx: dict[str, Any], document: dict[str, Any]) -> str:
        """Run as the `consume_event` job: apply one event, retrying with backoff on failure."""
        envelope = EventEnvelope.model_validate(document)
        correlation_id_var.set(envelope.correlation_id)
        job_try = int(ctx.get("job_try", 1))
        bound = log.bind(event_id=envelope.id, topic=envelope.topic, job_try=job_try)
        try:
            outcome = await self.apply(ctx["db"], envelope, ctx)
        except Exception as error:
            if job_try >= MAX_TRIES:
                bound.exception("event.failed")
                raise
            delay = retry_delay_s(job_try)
            bound.warning("event.retry", error=repr(error), retry_in_s=delay)
            raise Retry(defer=delay) from error
        bound.debug("event.consumed", outcome=outcome)
        return outcome
