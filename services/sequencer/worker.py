"""The sequencer service's arq worker: consumes contact events, runs due steps, sends email, relays its outbox."""

from typing import Any

from arq.worker import Function, func

from services.kit.consumer import BATCH_TIMEOUT_S, MAX_TRIES, EventConsumer
from services.kit.contracts import contacts as contact_topics
from services.kit.outbox import CONSUME_EVENT_JOB, CONSUME_EVENTS_JOB, Outbox
from services.kit.worker import build_worker_settings
from services.sequencer.db import OutboxMessage, ProcessedEvent
from services.sequencer.enrolments.dispatch import StepBatcher
from services.sequencer.enrolments.handlers import HANDLERS, prefetch_batch
from services.sequencer.enrolments.runtime import beat, build_runtime
from services.sequencer.enrolments.tasks import heartbeat, run_step_function, sweep_due_steps
from services.sequencer.privacy.handlers import on_contact_erased
from services.sequencer.settings import SequencerSettings

Context = dict[str, Any]


async def _start_runtime(ctx: Context) -> None:
    """Give jobs the step runtime."""
    runtime = build_runtime(
        ctx["settings"], db=ctx["db"], outbox=ctx["outbox"], redis=ctx["redis"], contacts=ctx["clients"].get("contacts")
    )
    ctx["runtime"] = runtime
    await beat(runtime)


async def _close_runtime(ctx: Context) -> None:
    """Stop the step batches, close the SMTP connections and clear the heartbeat when the worker stops."""
    if "runtime" in ctx:
        runtime = ctx["runtime"]
        if isinstance(runtime.batcher, StepBatcher):
            await runtime.batcher.close()
        await runtime.close()


def consume_functions(consumer: EventConsumer) -> list[Function]:
    """Return the `consume_event` and `consume_events` jobs, taking turns with the step transactions on SQLite.

    SQLite has one writer at a time, and its busy handler sleeps up to 100 ms between tries, so
    queueing on the process's lock keeps consumers and senders from stalling each other.
    """

    async def consume_event(ctx: Context, document: dict[str, Any]) -> str:
        async with ctx["runtime"].writing():
            return await consumer.consume(ctx, document)

    async def consume_events(ctx: Context, documents: list[dict[str, Any]]) -> dict[str, int]:
        async with ctx["runtime"].writing():
            return await consumer.consume_batch(ctx, documents)

    return [
        func(consume_event, name=CONSUME_EVENT_JOB, max_tries=MAX_TRIES, keep_result=3600),
        func(consume_events, name=CONSUME_EVENTS_JOB, max_tries=MAX_TRIES, keep_result=3600, timeout=BATCH_TIMEOUT_S),
    ]


def event_consumer() -> EventConsumer:
    """Return the consumer of the events the sequencer subscribes to, as its worker runs it."""
    handlers = {**HANDLERS, contact_topics.CONTACT_ERASED: on_contact_erased}
    return EventConsumer(ProcessedEvent, handlers, prefetch=prefetch_batch)


def worker_settings(settings: SequencerSettings | None = None) -> type:
    settings = settings or SequencerSettings()
    consumer = event_consumer()
    return build_worker_settings(
        settings,
        functions=[*consume_functions(consumer), run_step_function()],
        outbox=Outbox(OutboxMessage, service="sequencer", namespace=settings.namespace),
        clients=["contacts"],
        periodic=[heartbeat, sweep_due_steps],
        on_startup=[_start_runtime],
        on_shutdown=[_close_runtime],
    )
