"""A worker that stops while the outcomes of replied emails wait in their group still writes them."""

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from services.kit import clock
from services.sequencer.enrolments import batch
from services.sequencer.enrolments.batch import _Groups
from services.sequencer.enrolments.dispatch import batcher_of
from services.sequencer.enrolments.runtime import Runtime
from services.sequencer.sending.models import SentMessage
from tests.sequencer.support import Sink, drive
from tests.sequencer.test_exactly_once import kill, second_runtime  # noqa: F401 - a fixture
from tests.sequencer.test_batches import START, enrol_new, wait_then_email

Apps = tuple[FastAPI, httpx.AsyncClient]


async def test_stop_writes_lingering_outcome(api: Apps, runtime: Runtime, sink: Sink) -> None:
    _, client = api
    clock.freeze(START)
    sequence_id = await wait_then_email(client)
    await enrol_new(runtime, client, sequence_id, 1)

    async def defer_data(*args: Any) -> str:
        # The server defers the content after the final dot, so the step must retry the email later.
        return "451 4.3.0 Temporary failure, try again later"

    sink.handler.handle_DATA = defer_data  # type: ignore[method-assign]

    # A linger of a minute instead of 20 ms, so the stop lands inside it however fast the machine is.
    groups = _Groups(runtime, outcome_linger_s=60.0)
    runtime.groups = groups
    clock.freeze(START + timedelta(hours=1))
    sweep = asyncio.ensure_future(drive(runtime))
    async with asyncio.timeout(10):
        while groups.outcomes.pending == 0:
            await asyncio.sleep(0.01)

    # The worker stops: its shutdown hook closes the batcher, then the process ends.
    async with asyncio.timeout(10):
        await batcher_of(runtime).close()
    sweep.cancel()
    async with runtime.db.session() as session:
        [message] = (await session.exec(select(SentMessage).where(SentMessage.sequence_id == sequence_id))).all()

    assert groups.outcomes.pending == 0
    assert message.smtp_code == 451
    assert message.state == "retrying"


async def test_stop_during_hand_over_sends_once(
    api: Apps, runtime: Runtime, second_runtime: Runtime, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop that lands as a batch begins to hand its emails over still sends each email once."""
    _, client = api
    clock.freeze(START)
    sequence_id = await wait_then_email(client)
    addresses = await enrol_new(runtime, client, sequence_id, 5)
    hand_over = batch._hand_over
    stopping: list[asyncio.Task[None]] = []

    async def hand_over_while_stopping(runtime: Runtime, message_row_ids: list[int]) -> list[bool]:
        if not stopping:
            stopping.append(asyncio.ensure_future(batcher_of(runtime).close()))
            await asyncio.sleep(0)
        return await hand_over(runtime, message_row_ids)

    monkeypatch.setattr(batch, "_hand_over", hand_over_while_stopping)
    clock.freeze(START + timedelta(hours=1))
    sweep = asyncio.ensure_future(drive(runtime))
    async with asyncio.timeout(10):
        while not stopping:
            await asyncio.sleep(0.01)
        await stopping[0]
    sweep.cancel()
    await asyncio.gather(sweep, return_exceptions=True)
    monkeypatch.undo()
    await kill(runtime)

    await drive(second_runtime)

    assert {address: len(sink.handler.to(address)) for address in addresses.values()} == dict.fromkeys(addresses.values(), 1)
    async with runtime.db.session() as session:
        messages = (await session.exec(select(SentMessage).where(SentMessage.sequence_id == sequence_id))).all()
    assert [message.state for message in messages] == ["sent"] * 5
