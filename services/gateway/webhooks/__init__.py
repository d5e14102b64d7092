"""Verification and mapping of email-provider webhooks (SendGrid, Mailgun, Postmark, Amazon SES).

Pure library code: no web framework and no database. The gateway's routes pass the raw request to
`verify_and_map`, store the receipt, and de-duplicate the returned events by
`(provider, provider_event_id)`.
"""

from .bounces import (
    FailureClass,
    SoftBouncePolicy,
    classify_event,
    classify_failure,
    parse_enhanced_status,
    refine_bounce_type,
)
from .certificates import CertificateFetcher
from .config import (
    MailgunSettings,
    PostmarkCredentials,
    PostmarkSettings,
    SendGridSettings,
    SesSettings,
    WebhookConfig,
)
from .errors import RejectionCode, WebhookError, WebhookRejected, WebhookUnavailable
from .events import (
    EventType,
    Provider,
    SkippedEvent,
    SkipReason,
    WebhookEvent,
    WebhookResult,
)
from .replay import RedisReplayCache, ReplayCache
from .ses import confirm_sns_subscription
from .sns_urls import validate_signing_cert_url, validate_subscribe_url
from .verify import verify_and_map

__all__ = (
    "CertificateFetcher",
    "EventType",
    "FailureClass",
    "MailgunSettings",
    "PostmarkCredentials",
    "PostmarkSettings",
    "Provider",
    "RedisReplayCache",
    "RejectionCode",
    "ReplayCache",
    "SendGridSettings",
    "SesSettings",
    "SkipReason",
    "SkippedEvent",
    "SoftBouncePolicy",
    "WebhookConfig",
    "WebhookError",
    "WebhookEvent",
    "WebhookRejected",
    "WebhookResult",
    "WebhookUnavailable",
    "classify_event",
    "classify_failure",
    "confirm_sns_subscription",
    "parse_enhanced_status",
    "refine_bounce_type",
    "validate_signing_cert_url",
    "validate_subscribe_url",
    "verify_and_map",
)
