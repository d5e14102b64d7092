"""An email whose final dot went out but got no reply is recorded as sent without confirmation and never sent again.

The SMTP server is a real aiosmtpd sink that stores each message, then replies to the first final
dot only after the sequencer's SMTP timeout, or closes the connection without a reply. Both the
single step and the batch path are run.
"""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.smtp import Envelope
from sqlmodel import select
from structlog.testing import capture_logs

from services.kit import clock
from services.kit.db import Database
from services.sequencer.enrolments import runner
from services.sequencer.enrolments.dispatch import batcher_of
from services.sequencer.enrolments.models import Enrolment, StepRun
from services.sequencer.enrolments.runtime import Runtime, beat, build_runtime
from services.sequencer.sending.models import SentMessage
from tests.sequencer.conftest import Isolated
from tests.sequencer.support import Sink, drive
from tests.sequencer.test_exactly_once import one_email_step

START = datetime(2024, 6, 4, 9, 0, tzinfo=UTC)
# Short enough for a quick test, but every other SMTP command must still finish within it on a
# loaded machine. At 0.5 s the first attempt sometimes failed before its final dot (2 of about 25
# runs of this file with -n 2, at a load average of 4 on 2 cores).
SMTP_TIMEOUT_S = 2.0
# Far beyond the SMTP timeout, so the sequencer gives up waiting long before the reply comes.
LATE_REPLY_S = 5.0
RETRY_DELAY_S = 60


@pytest.fixture
async def impatient_runtime(isolated: Isolated, sink: Sink) -> AsyncIterator[Runtime]:
    """A worker that waits only `SMTP_TIMEOUT_S` for each SMTP reply and retries a failure after a minute."""
    settings = isolated.settings(
        smtp_port=sink.port, smtp_timeout_s=SMTP_TIMEOUT_S, smtp_retry_base_s=RETRY_DELAY_S, smtp_retry_max_s=RETRY_DELAY_S
    )
    db = Database(settings.database_url)
    running = build_runtime(settings, db=db)
    await beat(running)
    yield running
    await running.close()
    await db.dispose()


def leave_first_final_dot_unanswered(sink: Sink, fault: str) -> None:
    """Make the sink store every message, but reply to the first final dot late (`late`) or never (`dropped`)."""
    store = sink.handler.handle_DATA
    first = [True]

    async def handle_data(server: Any, session: Any, envelope: Envelope) -> str:
        reply = await store(server, session, envelope)
        if first:
            first.clear()
            if fault == "late":
                await asyncio.sleep(LATE_REPLY_S)
            else:
                server.transport.close()
        return reply

    sink.handler.handle_DATA = handle_data  # type: ignore[method-assign]


async def recorded(runtime: Runtime, sequence_id: str) -> tuple[SentMessage, StepRun, Enrolment]:
    async with runtime.db.session() as session:
        message = (await session.exec(select(SentMessage).where(SentMessage.sequence_id == sequence_id))).one()
        enrolment = (await session.exec(select(Enrolment).where(Enrolment.sequence_id == sequence_id))).one()
        run = (await session.exec(select(StepRun).where(StepRun.enrolment_id == enrolment.id))).one()
    return message, run, enrolment


def assert_sent_unconfirmed(message: SentMessage, run: StepRun, enrolment: Enrolment) -> None:
    """Check that the message counts as sent without confirmation, its step run is done and the enrolment went on."""
    assert message.state == "sent"
    assert message.attempts == 1
    assert message.smtp_code is None
    assert message.claimed_by is None
    assert message.next_attempt_at is None
    assert "no reply after the final dot" in (message.last_error or "")
    assert "may hold the message" in (message.last_error or "")
    assert run.state == "done"
    assert run.outcome == "sent_unconfirmed"
    assert enrolment.state == "completed"


def assert_one_warning(logs: list[dict[str, Any]], message: SentMessage, run: StepRun) -> None:
    warnings = [entry for entry in logs if entry["event"] == "message.outcome_unknown"]
    assert len(warnings) == 1, logs
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["message_id"] == message.message_id
    assert warnings[0]["step_run_id"] == run.id
    assert warnings[0]["enrolment_id"] == run.enrolment_id


@pytest.mark.parametrize("fault", ["late", "dropped"])
async def test_single_step_unanswered_dot_not_resent(impatient_runtime: Runtime, sink: Sink, fault: str) -> None:
    runtime = impatient_runtime
    clock.freeze(START)
    address = f"single-{fault}-{id(sink)}@example.com"
    sequence_id, step_run_id = await one_email_step(runtime, address)
    leave_first_final_dot_unanswered(sink, fault)

    with capture_logs() as logs:
        outcome = await runner.run_step(runtime, step_run_id)
    clock.freeze(START + timedelta(seconds=RETRY_DELAY_S + 1))
    later = await drive(runtime)

    assert len(sink.handler.to(address)) == 1
    assert sink.handler.rcpt_calls[address] == 1
    assert outcome == "sent_unconfirmed"
    assert later == {}
    message, run, enrolment = await recorded(runtime, sequence_id)
    assert_sent_unconfirmed(message, run, enrolment)
    assert_one_warning(logs, message, run)


@pytest.mark.parametrize("fault", ["late", "dropped"])
async def test_batch_unanswered_dot_not_resent(impatient_runtime: Runtime, sink: Sink, fault: str) -> None:
    runtime = impatient_runtime
    clock.freeze(START)
    address = f"batch-{fault}-{id(sink)}@example.com"
    sequence_id, _ = await one_email_step(runtime, address)
    leave_first_final_dot_unanswered(sink, fault)

    with capture_logs() as logs:
        first = await drive(runtime)
    clock.freeze(START + timedelta(seconds=RETRY_DELAY_S + 1))
    later = await drive(runtime)

    assert len(sink.handler.to(address)) == 1
    assert sink.handler.rcpt_calls[address] == 1
    assert first == {"sent_unconfirmed": 1}
    assert batcher_of(runtime).batched == 1
    assert batcher_of(runtime).alone == 0
    assert later == {}
    message, run, enrolment = await recorded(runtime, sequence_id)
    assert_sent_unconfirmed(message, run, enrolment)
    assert_one_warning(logs, message, run)
