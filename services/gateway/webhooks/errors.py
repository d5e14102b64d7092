"""Errors raised while verifying a provider webhook.

Each error carries the HTTP status the route should answer with, because the status steers the
provider's retries: Mailgun stops retrying only on 406, SendGrid and SNS retry anything that is not
2xx, and Postmark drops an event after most 4xx answers.
"""

from collections.abc import Mapping
from enum import StrEnum


class RejectionCode(StrEnum):
    """Stable, metric-friendly cause of a refused webhook request."""

    UNKNOWN_PROVIDER = "unknown_provider"
    PROVIDER_NOT_CONFIGURED = "provider_not_configured"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    BODY_TOO_LARGE = "body_too_large"

    MISSING_SIGNATURE = "missing_signature"
    MALFORMED_SIGNATURE = "malformed_signature"
    BAD_SIGNATURE = "bad_signature"
    INVALID_TIMESTAMP = "invalid_timestamp"
    STALE_TIMESTAMP = "stale_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"

    REPLAYED_TOKEN = "replayed_token"
    INVALID_EVENT_DATA = "invalid_event_data"

    MISSING_CREDENTIALS = "missing_credentials"
    BAD_CREDENTIALS = "bad_credentials"

    RAW_MESSAGE_DELIVERY = "raw_message_delivery"
    MALFORMED_ENVELOPE = "malformed_envelope"
    HEADER_MISMATCH = "header_mismatch"
    TOPIC_NOT_ALLOWED = "topic_not_allowed"
    UNSUPPORTED_SIGNATURE_VERSION = "unsupported_signature_version"
    INVALID_CERTIFICATE_URL = "invalid_certificate_url"
    INVALID_CERTIFICATE = "invalid_certificate"
    INVALID_SUBSCRIBE_URL = "invalid_subscribe_url"

    CERTIFICATE_UNAVAILABLE = "certificate_unavailable"
    REPLAY_CACHE_UNAVAILABLE = "replay_cache_unavailable"


class WebhookError(Exception):
    """A webhook request that must not be accepted, with the HTTP answer for the provider.

    `reason` is safe to log: it never contains a secret or a full signature value.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        code: RejectionCode,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {reason}")
        self.status = status
        self.reason = reason
        self.code = code
        self.headers: dict[str, str] = dict(headers or {})


class WebhookRejected(WebhookError):
    """The request is forged, tampered, stale, replayed, unsigned, wrongly signed or unusable."""


class WebhookUnavailable(WebhookError):
    """A dependency (certificate host, replay cache) failed; answer 503 so the provider retries."""

    def __init__(self, reason: str, *, code: RejectionCode) -> None:
        super().__init__(503, reason, code=code)
