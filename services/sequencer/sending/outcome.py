"""Classify an SMTP reply as accepted, permanent or transient, and plan retries with backoff.

The enhanced status code (RFC 3463, e.g. `5.1.1`) decides when present, because its class is more
specific than the basic reply code, and providers sometimes pair a 4xx reply with a 5.x.x status.
Without it, the first digit of the reply code decides (RFC 5321: 2 accepted, 4 transient, 5 permanent).
A reply that never came (connection refused, timeout) is transient. The SMTP client reports a final
dot of DATA that got no reply as `unconfirmed` instead, because the server may hold that message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from services.sequencer.schedule.local_time import require_aware

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY = re.compile(r"^\s*(\d{3})(?:[ -]+(.*))?$", re.DOTALL)


class SmtpOutcomeKind(StrEnum):
    """Meaning of a reply for the message."""

    ACCEPTED = "accepted"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    # The final dot went out but no reply came (timeout, dropped connection). The server may hold the
    # message, so it counts as sent and is never sent again.
    UNCONFIRMED = "unconfirmed"


@dataclass(frozen=True)
class SmtpOutcome:
    """A classified SMTP reply."""

    kind: SmtpOutcomeKind
    code: int | None
    enhanced_status: str | None

    @property
    def retry(self) -> bool:
        """Whether the send should be tried again later."""
        return self.kind is SmtpOutcomeKind.TRANSIENT

    @property
    def counts_as_bounce(self) -> bool:
        """Whether the failure is final and counts as a bounce in the step's metrics."""
        return self.kind is SmtpOutcomeKind.PERMANENT


def parse_smtp_reply(reply: str) -> tuple[int, str | None]:
    """Split a reply line such as `550 5.1.1 user unknown` into its code and enhanced status.

    Raises:
        ValueError: the text does not start with a three-digit reply code.
    """
    match = _REPLY.match(reply)
    if not match:
        raise ValueError(f"SMTP reply must start with a three-digit code, got {reply[:80]!r}")
    enhanced = _ENHANCED.match(match.group(2) or "")
    return int(match.group(1)), enhanced.group(0).strip() if enhanced else None


def classify_smtp_reply(code: int | None, enhanced_status: str | None = None) -> SmtpOutcome:
    """Classify a reply code (None when no reply came) and an optional enhanced status.

    It never returns `UNCONFIRMED`, which `SmtpPool.send` sets itself when the final dot got no reply.

    Raises:
        ValueError: `code` is not a reply code (200-599), or `enhanced_status` is not `class.subject.detail`.
    """
    if code is not None and not 200 <= code <= 599:
        raise ValueError(f"SMTP reply code must be between 200 and 599, got {code}")

    status_class: str | None = None
    if enhanced_status is not None:
        match = _ENHANCED.match(enhanced_status)
        if not match or match.group(0).strip() != enhanced_status.strip():
            raise ValueError(f"enhanced status must look like 5.1.1, got {enhanced_status!r}")
        status_class = match.group(1)

    if status_class is None:
        status_class = None if code is None else str(code)[0]
    kind = {
        "2": SmtpOutcomeKind.ACCEPTED,
        "4": SmtpOutcomeKind.TRANSIENT,
        "5": SmtpOutcomeKind.PERMANENT,
    }.get(status_class or "", SmtpOutcomeKind.TRANSIENT)
    return SmtpOutcome(kind, code, enhanced_status.strip() if enhanced_status else None)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with a bounded number of attempts.

    After attempt n fails transiently (n counts from 1), the next attempt waits
    `min(base_delay * factor ** (n - 1), max_delay)`; after `max_attempts` attempts the send is given up.
    """

    max_attempts: int = 5
    base_delay: timedelta = timedelta(minutes=5)
    factor: float = 3.0
    max_delay: timedelta = timedelta(hours=6)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.base_delay <= timedelta(0) or self.max_delay < self.base_delay:
            raise ValueError("base_delay must be positive and max_delay at least base_delay")
        if self.factor < 1:
            raise ValueError(f"factor must be at least 1, got {self.factor}")

    def delay_after(self, attempts_made: int) -> timedelta | None:
        """Return the wait before the next attempt, or None when no attempt is left."""
        if attempts_made < 1:
            raise ValueError(f"attempts_made counts from 1, got {attempts_made}")
        if attempts_made >= self.max_attempts:
            return None
        seconds = self.base_delay.total_seconds() * self.factor ** (attempts_made - 1)
        return min(timedelta(seconds=seconds), self.max_delay)

    def next_attempt_at(self, attempts_made: int, last_attempt_at: datetime) -> datetime | None:
        """Return when to try again after `attempts_made` failed attempts, or None to give up."""
        delay = self.delay_after(attempts_made)
        if delay is None:
            return None
        return require_aware(last_attempt_at, "last_attempt_at") + delay


DEFAULT_RETRY_POLICY = RetryPolicy()
