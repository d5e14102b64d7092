"""Sending: the MIME message, tracking links, and SMTP outcome classification with retries."""

from services.sequencer.sending.links import tracking_links
from services.sequencer.sending.message import MessageBuildError, build_message, new_message_id
from services.sequencer.sending.outcome import (
    DEFAULT_RETRY_POLICY,
    RetryPolicy,
    SmtpOutcome,
    SmtpOutcomeKind,
    classify_smtp_reply,
    parse_smtp_reply,
)

__all__ = (
    "DEFAULT_RETRY_POLICY",
    "MessageBuildError",
    "RetryPolicy",
    "SmtpOutcome",
    "SmtpOutcomeKind",
    "build_message",
    "classify_smtp_reply",
    "new_message_id",
    "parse_smtp_reply",
    "tracking_links",
)
