"""A step run twice, by two workers, or after a worker died never sends its email twice; Redis only wakes workers."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import pytest
from arq.worker import Worker
from sqlalchemy import update
from sqlmodel import col, select

from services.kit import clock
from services.kit.db import Database
from services.kit.queue import ARQ_JOB_KEY_PREFIX, create_queue_pool, deserialize_job, queue_name, serialize_job
from services.sequencer.enrolments import runner
from services.sequencer.enrolments.models import Enrolment, StepRun, WorkerHeartbeat
from services.sequencer.enrolments.runtime import Runtime, beat, build_runtime
from services.sequencer.enrolments.wakeups import Wakeup, flush_enqueues, step_job_id
from services.sequencer.facts.service import get_facts
from services.sequencer.enrolments.dispatch import run_guarded
from services.sequencer.enrolments.tasks import run_step_function
from services.sequencer.sending.models import SentMessage
from tests.sequencer.conftest import Isolated
from tests.sequencer.support import Sink, add_contact, drive
from tests.sequencer.test_scheduling import enrol_now, start_sequence

START = datetime(2024, 6, 4, 9, 0, tzinfo=UTC)


async def flush_closing_connections() -> None:
    """Wait for the connections that hand-overs return to the pool in the background."""
    while runner._closing:
        await asyncio.gather(*list(runner._closing))


@pytest.fixture
async def second_runtime(isolated: Isolated, sink: Sink) -> AsyncIterator[Runtime]:
    """Another worker on the same database and SMTP server."""
    settings = isolated.settings(smtp_port=sink.port)
    db = Database(settings.database_url)
    running = build_runtime(settings, db=db)
    await beat(running)
    yield running
    await running.close()
    await db.dispose()


async def one_email_step(runtime: Runtime, address: str) -> tuple[str, int]:
    """Enrol a new contact in a one-email sequence; return the sequence id and the email's step run id."""
    sequence_id = await start_sequence(runtime, [{"email": {"subject": "Only once"}}])
    contact_id = await add_contact(runtime, address)
    await enrol_now(runtime, sequence_id, contact_id)
    async with runtime.db.session() as session:
        query = (
            select(StepRun.id)
            .join(Enrolment, col(Enrolment.id) == col(StepRun.enrolment_id))
            .where(Enrolment.sequence_id == sequence_id)
        )
        step_run_id = (await session.exec(query)).one()
    assert step_run_id is not None
    return sequence_id, step_run_id


async def message_of(runtime: Runtime, sequence_id: str) -> SentMessage:
    async with runtime.db.session() as session:
        return (await session.exec(select(SentMessage).where(SentMessage.sequence_id == sequence_id))).one()


async def test_concurrent_runs_send_once(runtime: Runtime, second_runtime: Runtime, sink: Sink) -> None:
    clock.freeze(START)
    _, step_run_id = await one_email_step(runtime, "concurrent@example.com")

    outcomes = await asyncio.gather(
        *(runner.run_step(worker, step_run_id) for worker in (runtime, second_runtime) for _ in range(4))
    )

    assert outcomes.count("sent") == 1, outcomes
    assert len(sink.handler.to("concurrent@example.com")) == 1


async def test_step_run_again_after_sending_does_nothing(runtime: Runtime, sink: Sink) -> None:
    clock.freeze(START)
    _, step_run_id = await one_email_step(runtime, "again@example.com")

    first = await runner.run_step(runtime, step_run_id)
    second = await runner.run_step(runtime, step_run_id)

    assert (first, second) == ("sent", "finished")
    assert len(sink.handler.to("again@example.com")) == 1


async def claim_without_sending(runtime: Runtime, step_run_id: int) -> runner.Delivery:
    """Do what a worker does up to SMTP, then stop as if it were killed."""
    async with AsyncExitStack() as locks, runtime.db.session() as session:
        delivery = await runner._prepare(runner._Claim(runtime, session, locks), step_run_id)
    assert isinstance(delivery, runner.Delivery)
    runtime.in_flight.discard(delivery.message_row_id)
    return delivery


async def kill(runtime: Runtime) -> None:
    """Make the worker look dead: its heartbeat is older than the takeover limit."""
    async with runtime.db.session() as session:
        await session.exec(
            update(WorkerHeartbeat)  # type: ignore[call-overload]
            .where(col(WorkerHeartbeat.worker_id) == runtime.worker_id)
            .values(beat_at=datetime(2000, 1, 1, tzinfo=UTC))
        )
        await session.commit()


async def test_live_workers_send_is_left_alone(runtime: Runtime, second_runtime: Runtime, sink: Sink) -> None:
    clock.freeze(START)
    _, step_run_id = await one_email_step(runtime, "in-flight@example.com")
    delivery = await claim_without_sending(runtime, step_run_id)
    runtime.in_flight.add(delivery.message_row_id)

    assert await runner.run_step(second_runtime, step_run_id) == "in_flight"
    assert sink.handler.to("in-flight@example.com") == []


async def test_dead_workers_claim_sent_once(runtime: Runtime, second_runtime: Runtime, sink: Sink) -> None:
    clock.freeze(START)
    sequence_id, step_run_id = await one_email_step(runtime, "taken-over@example.com")
    delivery = await claim_without_sending(runtime, step_run_id)
    await kill(runtime)

    outcome = await runner.run_step(second_runtime, step_run_id)

    [received] = sink.handler.to("taken-over@example.com")
    assert outcome == "sent"
    assert received["Message-ID"] == delivery.message_id
    message = await message_of(runtime, sequence_id)
    assert (message.state, message.attempts) == ("sent", 1)


async def test_claim_after_final_dot_not_resent(runtime: Runtime, second_runtime: Runtime, sink: Sink) -> None:
    """A worker that died after handing the message over may have delivered it, so it is taken as sent."""
    clock.freeze(START)
    sequence_id, step_run_id = await one_email_step(runtime, "handed-over@example.com")
    delivery = await claim_without_sending(runtime, step_run_id)
    assert await runner._hand_over(runtime, delivery)
    await flush_closing_connections()
    await kill(runtime)

    outcome = await runner.run_step(second_runtime, step_run_id)

    assert outcome == "sent_unconfirmed"
    assert sink.handler.to("handed-over@example.com") == []
    message = await message_of(runtime, sequence_id)
    assert message.state == "sent"
    assert "may hold the message" in (message.last_error or "")


async def test_orphaned_claim_of_this_worker_is_taken_over(runtime: Runtime, sink: Sink) -> None:
    """A claim of this very worker with no send in progress (the task failed) does not block the step forever."""
    clock.freeze(START)
    _, step_run_id = await one_email_step(runtime, "orphan@example.com")
    await claim_without_sending(runtime, step_run_id)

    assert await runner.run_step(runtime, step_run_id) == "sent"
    assert len(sink.handler.to("orphan@example.com")) == 1


async def test_wakeup_job_and_lost_job(isolated: Isolated, sink: Sink) -> None:
    # A queue of its own: a burst worker runs until its queue is empty, deferred jobs included.
    settings = isolated.settings(smtp_port=sink.port, NURTURE_NAMESPACE=f"{isolated.namespace}-{uuid.uuid4().hex[:6]}")
    redis = await create_queue_pool(settings.redis_url)
    db = Database(settings.database_url)
    runtime = build_runtime(settings, db=db, redis=redis)
    await beat(runtime)
    clock.freeze(START)
    try:
        _, first_run = await one_email_step(runtime, "woken@example.com")
        _, lost_run = await one_email_step(runtime, "lost-job@example.com")
        await flush_enqueues()

        first_job = step_job_id(settings.namespace, Wakeup(first_run, 0, START))
        lost_job = step_job_id(settings.namespace, Wakeup(lost_run, 0, START))
        assert await redis.exists(ARQ_JOB_KEY_PREFIX + first_job) == 1
        score = await redis.zscore(queue_name(settings.namespace, "sequencer"), first_job)
        assert score == pytest.approx(clock.to_wall_clock(START).timestamp() * 1000, abs=2000)

        # What a Redis flush does to one job: its record and its place in the queue vanish.
        await redis.delete(ARQ_JOB_KEY_PREFIX + lost_job)
        await redis.zrem(queue_name(settings.namespace, "sequencer"), lost_job)
        # Only the job function, without the worker's periodic sweep, so the job alone must send.
        worker = Worker(
            functions=[run_step_function()],
            queue_name=queue_name(settings.namespace, "sequencer"),
            redis_pool=redis,
            burst=True,
            poll_delay=0.01,
            handle_signals=False,
            ctx={"runtime": runtime},
            job_serializer=serialize_job,
            job_deserializer=deserialize_job,
        )
        await worker.main()
        assert len(sink.handler.to("woken@example.com")) == 1
        assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)
        assert sink.handler.to("lost-job@example.com") == []

        await drive(runtime)
        assert len(sink.handler.to("lost-job@example.com")) == 1
    finally:
        await runtime.close()
        await db.dispose()
        await redis.aclose()


async def test_deferred_send_gets_new_job_id(isolated: Isolated, sink: Sink) -> None:
    """A send deferred at send time is a new wake-up, so the finished job of the first due time cannot block it."""
    settings = isolated.settings(smtp_port=sink.port, NURTURE_NAMESPACE=f"{isolated.namespace}-{uuid.uuid4().hex[:6]}")
    redis = await create_queue_pool(settings.redis_url)
    db = Database(settings.database_url)
    runtime = build_runtime(settings, db=db, redis=redis)
    await beat(runtime)
    clock.freeze(datetime(2024, 6, 4, 12, 0, tzinfo=UTC))
    try:
        sequence_id = await start_sequence(
            runtime, [{"wait": {"hours": 8}}, {"email": {"subject": "Evening"}}], quiet_hours={"start": "21:00", "end": "08:00"}
        )
        contact_id = await add_contact(runtime, "deferred-job@example.com", timezone="UTC")
        await enrol_now(runtime, sequence_id, contact_id)
        clock.freeze(datetime(2024, 6, 4, 20, 0, tzinfo=UTC))
        async with runtime.db.session() as session:
            wait_run = (await session.exec(select(StepRun).join(Enrolment).where(Enrolment.sequence_id == sequence_id))).one()
        assert await runner.run_step(runtime, wait_run.id or 0) == "waited"
        async with runtime.db.session() as session:
            fact = await get_facts(session, contact_id)
            assert fact is not None
            fact.timezone = "Europe/Berlin"
            await session.commit()

        await drive(runtime)
        await flush_enqueues()

        async with runtime.db.session() as session:
            query = select(StepRun).join(Enrolment).where(Enrolment.sequence_id == sequence_id, StepRun.kind == "email")
            email_run = (await session.exec(query)).one()
        assert (email_run.due_at, email_run.wake_revision) == (datetime(2024, 6, 5, 6, 0, tzinfo=UTC), 1)
        for revision in (0, 1):
            job = step_job_id(settings.namespace, Wakeup(email_run.id or 0, revision, email_run.due_at))
            assert await redis.exists(ARQ_JOB_KEY_PREFIX + job) == 1
    finally:
        await runtime.close()
        await db.dispose()
        await redis.aclose()


async def test_email_after_wait_runs_without_job(isolated: Isolated, sink: Sink) -> None:
    """The email that a finished wait makes due is sent in the same run, and no Redis job is left for it."""
    settings = isolated.settings(smtp_port=sink.port, NURTURE_NAMESPACE=f"{isolated.namespace}-{uuid.uuid4().hex[:6]}")
    redis = await create_queue_pool(settings.redis_url)
    db = Database(settings.database_url)
    runtime = build_runtime(settings, db=db, redis=redis)
    await beat(runtime)
    clock.freeze(START)
    try:
        sequence_id = await start_sequence(runtime, [{"wait": {"hours": 1}}, {"email": {"subject": "Right after"}}])
        contact_id = await add_contact(runtime, "chained@example.com")
        await enrol_now(runtime, sequence_id, contact_id)
        clock.freeze(START + timedelta(hours=1))
        async with runtime.db.session() as session:
            wait_run = (await session.exec(select(StepRun).join(Enrolment).where(Enrolment.sequence_id == sequence_id))).one()

        assert await run_guarded(runtime, wait_run.id or 0) == "waited"
        await flush_enqueues()

        assert len(sink.handler.to("chained@example.com")) == 1
        async with runtime.db.session() as session:
            query = select(StepRun).join(Enrolment).where(Enrolment.sequence_id == sequence_id, StepRun.kind == "email")
            email_run = (await session.exec(query)).one()
        assert (email_run.state, email_run.outcome) == ("done", "sent")
        job = step_job_id(settings.namespace, Wakeup(email_run.id or 0, 0, email_run.due_at))
        assert await redis.exists(ARQ_JOB_KEY_PREFIX + job) == 0
        assert runtime.running == set()
        assert await drive(runtime) == {}
    finally:
        await runtime.close()
        await db.dispose()
        await redis.aclose()


async def test_stop_after_hand_over_finishes_send(
    runtime: Runtime, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock.freeze(START)
    _, step_run_id = await one_email_step(runtime, "stopped-mid-send@example.com")
    handed_over = asyncio.Event()
    hand_over = runner._hand_over

    async def slow_hand_over(*args: object) -> bool:
        # The hand-over commits, then the worker stops before the final dot goes out.
        committed = await hand_over(*args)  # type: ignore[arg-type]
        handed_over.set()
        await asyncio.sleep(0.2)
        return committed

    monkeypatch.setattr(runner, "_hand_over", slow_hand_over)
    step = asyncio.create_task(runner.run_step(runtime, step_run_id))
    await handed_over.wait()
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
    await asyncio.gather(*list(runner.releasing), return_exceptions=True)
    await flush_closing_connections()

    assert len(sink.handler.to("stopped-mid-send@example.com")) == 1


async def test_stop_during_hand_over_sends_once(
    runtime: Runtime, second_runtime: Runtime, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop that lands while the hand-over is being written neither loses the email nor sends it twice.

    The step's own connection closes as the step is cancelled, while the send that outlives the step
    is still writing its hand-over. Whatever that write comes to, the email reaches the server once.
    """
    clock.freeze(START)
    sequence_id, step_run_id = await one_email_step(runtime, "stopped-in-hand-over@example.com")
    hand_over = runner._hand_over
    step: asyncio.Task[str] | None = None

    async def hand_over_while_stopping(*args: object) -> bool:
        assert step is not None
        step.cancel()
        return await hand_over(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "_hand_over", hand_over_while_stopping)
    step = asyncio.create_task(runner.run_step(runtime, step_run_id))
    with pytest.raises(asyncio.CancelledError):
        await step
    await asyncio.gather(*list(runner.releasing), return_exceptions=True)
    await flush_closing_connections()
    monkeypatch.undo()
    await kill(runtime)

    await runner.run_step(second_runtime, step_run_id)

    assert len(sink.handler.to("stopped-in-hand-over@example.com")) == 1
    message = await message_of(runtime, sequence_id)
    assert message.state == "sent"


async def test_hand_overs_beside_heartbeat_send_all(runtime: Runtime, sink: Sink, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten steps reaching the hand-over together, while a heartbeat waits to write, neither stall nor fail.

    Each hand-over takes a connection of its own. On SQLite, taking it before the write lock left the
    heartbeat holding the lock while the hand-overs held the pool's last connections.
    """
    clock.freeze(START)
    addresses = [f"together{number}@example.com" for number in range(10)]
    step_run_ids = [(await one_email_step(runtime, address))[1] for address in addresses]
    hand_over = runner._hand_over
    arrived = 0
    everyone = asyncio.Event()
    beats: list[asyncio.Task[None]] = []

    async def hand_over_together(*args: object) -> bool:
        nonlocal arrived
        arrived += 1
        if arrived == min(len(addresses), runtime.settings.smtp_connections):
            beats.append(asyncio.create_task(beat(runtime)))
            await asyncio.sleep(0)
            everyone.set()
        await asyncio.wait_for(everyone.wait(), 10)
        return await hand_over(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "_hand_over", hand_over_together)
    async with asyncio.timeout(20):
        outcomes = await asyncio.gather(*(runner.run_step(runtime, step_run_id) for step_run_id in step_run_ids))
        await asyncio.gather(*beats)
    await flush_closing_connections()

    assert outcomes == ["sent"] * len(addresses)
    assert [len(sink.handler.to(address)) for address in addresses] == [1] * len(addresses)
