"""Sending over SMTP with aiosmtplib: a pool of reused connections and one transaction per email.

`SmtpPool.send` runs MAIL, RCPT and DATA for one message and classifies the reply. It writes the
message content, then awaits `before_final_dot`, and only then writes the final `.` line that makes
the server take the message. The caller records "the server may now hold it" in that callback, so a
worker killed at any moment leaves a row that shows whether sending the message again is safe.
The only gap left is between that record being committed and the dot being written, a few
statements of this process.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import Message

import aiosmtplib
from aiosmtplib import SMTP, SMTPException, SMTPResponseException

from services.kit.logging import get_logger
from services.sequencer.sending.outcome import SmtpOutcome, SmtpOutcomeKind, classify_smtp_reply, parse_smtp_reply
from services.sequencer.settings import SequencerSettings

_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
_LEADING_DOT = re.compile(rb"(?m)^\.")
_DATA_READY = 354

log = get_logger(__name__)

BeforeFinalDot = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class SendResult:
    """What became of one SMTP transaction.

    `outcome` is None when the caller's `before_final_dot` declined, so the server never took the
    message. `handed_over` is true once the final dot was written, after which the server may hold
    the message even when no reply came. Such a send without a reply has the outcome `UNCONFIRMED`.
    """

    outcome: SmtpOutcome | None
    reply: str
    handed_over: bool


@dataclass
class _Progress:
    data_started: bool = False
    handed_over: bool = False


class _Aborted(Exception):
    """The caller declined to finish the transaction."""


def data_payload(message: bytes) -> bytes:
    """Return message bytes as DATA sends them: CRLF line endings, leading dots doubled, no final dot."""
    payload = _LINE_ENDINGS.sub(b"\r\n", message)
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    return _LEADING_DOT.sub(b"..", payload)


def _outcome_of(error: SMTPResponseException) -> tuple[SmtpOutcome, str]:
    reply = f"{error.code} {error.message}".strip()
    try:
        code, enhanced = parse_smtp_reply(reply)
        return classify_smtp_reply(code, enhanced), reply
    except ValueError:
        return classify_smtp_reply(None), reply


class SmtpPool:
    """Open SMTP connections of one worker, reused across messages; at most `size` at once."""

    def __init__(self, settings: SequencerSettings) -> None:
        self.settings = settings
        self._idle: list[SMTP] = []
        self._slots = asyncio.Semaphore(settings.smtp_connections)
        self.transactions = 0

    async def _connect(self) -> SMTP:
        settings = self.settings
        smtp = SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            timeout=settings.smtp_timeout_s,
            start_tls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=settings.smtp_password,
        )
        await smtp.connect()
        return smtp

    async def close(self) -> None:
        """Say QUIT on every idle connection."""
        idle, self._idle = self._idle, []
        for smtp in idle:
            try:
                await smtp.quit()
            except (SMTPException, OSError, asyncio.TimeoutError):
                smtp.close()

    async def send(
        self, message: Message, *, sender: str, recipient: str, before_final_dot: BeforeFinalDot
    ) -> SendResult:
        """Send one message to one recipient and classify the reply; SMTP and connection errors become outcomes."""
        payload = data_payload(message.as_bytes())
        async with self._slots:
            smtp = self._idle.pop() if self._idle else None
            if smtp is not None and smtp.is_connected:
                result = await self._attempt(smtp, payload, sender, recipient, before_final_dot, reused=True)
                if result is not None:
                    return result
            return await self._attempt(None, payload, sender, recipient, before_final_dot, reused=False) or SendResult(
                classify_smtp_reply(None), "no reply", False
            )

    async def _attempt(
        self,
        smtp: SMTP | None,
        payload: bytes,
        sender: str,
        recipient: str,
        before_final_dot: BeforeFinalDot,
        *,
        reused: bool,
    ) -> SendResult | None:
        """Run one transaction; return None when a reused connection died before any data went out."""
        progress = _Progress()
        try:
            if smtp is None:
                smtp = await self._connect()
            await smtp.mail(sender)
            await smtp.rcpt(recipient)
            response = await smtp.execute_command(b"DATA")
            if response.code != _DATA_READY:
                raise aiosmtplib.SMTPDataError(response.code, response.message)

            reply = await self._finish_data(smtp, payload, before_final_dot, progress)
        except _Aborted:
            smtp.close()  # type: ignore[union-attr]
            return SendResult(None, "aborted before the final dot", False)
        except SMTPResponseException as error:
            outcome, text = _outcome_of(error)
            await self._release_after_refusal(smtp)
            return SendResult(outcome, text, progress.handed_over)
        except (SMTPException, OSError, asyncio.TimeoutError) as error:
            if smtp is not None:
                smtp.close()
            if reused and not progress.data_started:
                log.info("smtp.reconnect", error=repr(error))
                return None
            if progress.handed_over:
                # Only the wait for the reply to the final dot fails after the hand-over, and the
                # server may have taken the message before its reply was lost or late.
                return SendResult(SmtpOutcome(SmtpOutcomeKind.UNCONFIRMED, None, None), str(error)[:300], True)
            return SendResult(classify_smtp_reply(None), repr(error)[:300], False)

        self.transactions += 1
        self._idle.append(smtp)
        return SendResult(classify_smtp_reply(reply.code, _enhanced(reply.message)), f"{reply.code} {reply.message}", True)

    async def _finish_data(
        self, smtp: SMTP, payload: bytes, before_final_dot: BeforeFinalDot, progress: _Progress
    ) -> aiosmtplib.SMTPResponse:
        protocol = smtp.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("connection lost before the message content")
        progress.data_started = True
        protocol.write(payload)
        if not await before_final_dot():
            raise _Aborted()

        # Nothing may await between the write and reading the reply, or the reply could arrive while
        # the protocol does not expect one.
        protocol.write(b".\r\n")
        progress.handed_over = True
        try:
            reply = await protocol.read_response(timeout=self.settings.smtp_timeout_s)
        except (SMTPException, OSError, asyncio.TimeoutError) as error:
            smtp.close()
            raise _NoReply(error) from error
        if reply.code >= 400:
            raise SMTPResponseException(reply.code, reply.message)
        return reply

    async def _release_after_refusal(self, smtp: SMTP | None) -> None:
        """Reset a connection the server refused a command on, so the next message can reuse it."""
        if smtp is None or not smtp.is_connected:
            return
        try:
            await smtp.rset()
        except (SMTPException, OSError, asyncio.TimeoutError):
            smtp.close()
            return
        self._idle.append(smtp)


class _NoReply(SMTPException):
    """The final dot went out but no reply came back."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"no reply after the final dot: {error!r}")


def _enhanced(message: str) -> str | None:
    try:
        return parse_smtp_reply(f"250 {message}")[1]
    except ValueError:
        return None
