"""Two workers' sweeps divide the due step runs between them through claims in Redis."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import pytest
from arq.connections import ArqRedis
from sqlmodel import col, select

from services.cli.supervisor import free_port
from services.kit import clock
from services.kit.db import Database
from services.kit.queue import create_queue_pool
from services.sequencer.enrolments import claims
from services.sequencer.enrolments.claims import claim, claim_key, release
from services.sequencer.enrolments.runtime import Runtime, beat, build_runtime
from services.sequencer.enrolments.tasks import due_step_runs, sweep_due_steps
from services.sequencer.enrolments.models import StepRun
from services.sequencer.sending.models import SentMessage
from tests.sequencer.conftest import Isolated
from tests.sequencer.support import Sink, add_contact
from tests.sequencer.test_scheduling import enrol_now, start_sequence

START = datetime(2024, 6, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
async def workers(isolated: Isolated, sink: Sink) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """Two workers on one database, one SMTP server and one Redis namespace of their own."""
    settings = isolated.settings(smtp_port=sink.port, NURTURE_NAMESPACE=f"{isolated.namespace}-{uuid.uuid4().hex[:6]}")
    async with AsyncExitStack() as stack:
        redis = await create_queue_pool(settings.redis_url)
        stack.push_async_callback(redis.aclose)
        runtimes = []
        for _ in range(2):
            db = Database(settings.database_url)
            stack.push_async_callback(db.dispose)
            runtime = build_runtime(settings, db=db, redis=redis)
            stack.push_async_callback(runtime.close)
            await beat(runtime)
            runtimes.append(runtime)
        clock.freeze(START)
        yield runtimes[0], runtimes[1]

        keys = [key async for key in redis.scan_iter(f"{settings.namespace}:*")]
        if keys:
            await redis.delete(*keys)


async def due_emails(runtime: Runtime, count: int) -> tuple[str, list[str]]:
    """Enrol `count` new contacts in a one-email sequence, due now; return the sequence and the addresses."""
    sequence_id = await start_sequence(runtime, [{"email": {"subject": "Claimed"}}])
    addresses = [f"claim-{uuid.uuid4().hex[:10]}@example.com" for _ in range(count)]
    for address in addresses:
        await enrol_now(runtime, sequence_id, await add_contact(runtime, address))
    return sequence_id, addresses


async def recipients(runtime: Runtime, sequence_id: str) -> list[str]:
    """Return the recipients of the emails the sequence sent."""
    async with runtime.db.session() as session:
        query = select(SentMessage.recipient).where(col(SentMessage.sequence_id) == sequence_id)
        return sorted((await session.exec(query)).all())


async def states(runtime: Runtime, step_run_ids: list[int]) -> list[str]:
    async with runtime.db.session() as session:
        return list((await session.exec(select(StepRun.state).where(col(StepRun.id).in_(step_run_ids)))).all())


async def test_sweep_leaves_claimed_step_runs(workers: tuple[Runtime, Runtime], sink: Sink) -> None:
    first, second = workers
    sequence_id, addresses = await due_emails(first, 6)
    claimed_by_first = [step_run_id for step_run_id, _ in await due_step_runs(first, 3)]

    assert await claim(first, claimed_by_first) == claimed_by_first
    await sweep_due_steps({"runtime": second})
    after_one_sweep = await recipients(first, sequence_id)
    first_states = await states(first, claimed_by_first)

    await release(first, claimed_by_first)
    await sweep_due_steps({"runtime": second})

    assert len(after_one_sweep) == 3
    assert first_states == ["scheduled"] * 3
    assert await recipients(first, sequence_id) == sorted(addresses)
    assert all(len(sink.handler.to(address)) == 1 for address in addresses)


async def test_dead_workers_claims_expire(
    workers: tuple[Runtime, Runtime], sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = workers
    monkeypatch.setattr(claims, "CLAIM_TTL_MS", 300)
    sequence_id, addresses = await due_emails(first, 4)
    # The first worker claims every due step and dies before running any: its claims are never released.
    await claim(first, [step_run_id for step_run_id, _ in await due_step_runs(first, 10)])

    await sweep_due_steps({"runtime": second})
    sent_while_claimed = await recipients(second, sequence_id)
    await asyncio.sleep(0.4)
    await sweep_due_steps({"runtime": second})

    assert sent_while_claimed == []
    assert await recipients(second, sequence_id) == sorted(addresses)
    assert all(len(sink.handler.to(address)) == 1 for address in addresses)


async def test_concurrent_sweeps_send_each_email_once(workers: tuple[Runtime, Runtime], sink: Sink) -> None:
    first, second = workers
    sequence_id, addresses = await due_emails(first, 30)

    await asyncio.gather(sweep_due_steps({"runtime": first}), sweep_due_steps({"runtime": second}))
    claims_left = [key async for key in first.redis.scan_iter(claim_key(first.settings.namespace, 0)[:-1] + "*")]  # type: ignore[union-attr]

    assert await recipients(first, sequence_id) == sorted(addresses)
    assert all(len(sink.handler.to(address)) == 1 for address in addresses)
    # Every claim was deleted when its batch ended.
    assert claims_left == []


async def test_claims_divide_and_expire(workers: tuple[Runtime, Runtime]) -> None:
    first, second = workers
    ids = [901, 902, 903]

    first_claims = await claim(first, ids[:2])
    second_claims = await claim(second, ids)
    ttl = await first.redis.pttl(claim_key(first.settings.namespace, 901))  # type: ignore[union-attr]

    assert first_claims == [901, 902]
    assert second_claims == [903]
    assert 0 < ttl <= 60_000
    await release(first, ids[:2])
    await release(second, [903])
    assert await claim(second, ids) == ids
    await release(second, ids)


async def test_release_leaves_claims_of_others(workers: tuple[Runtime, Runtime]) -> None:
    first, second = workers
    assert await claim(first, [911]) == [911]
    # The first claim expired while its batch still ran, and the second worker claimed the step.
    await first.redis.delete(claim_key(first.settings.namespace, 911))  # type: ignore[union-attr]
    assert await claim(second, [911]) == [911]

    await release(first, [911])

    assert await claim(first, [911]) == []
    await release(second, [911])
    assert await claim(first, [911]) == [911]
    await release(first, [911])


async def test_redis_outage_sweeps_unclaimed(workers: tuple[Runtime, Runtime]) -> None:
    first, _ = workers
    # Nothing listens on this port, so every Redis command fails to connect.
    first.redis = ArqRedis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)

    try:
        claimed = await claim(first, [1, 2, 3])
        await release(first, [1, 2, 3])
    finally:
        await first.redis.aclose()
        first.redis = None

    assert claimed == [1, 2, 3]
