"""The single entry point: authenticate a provider webhook request and map it to common events."""

from collections.abc import Mapping
from datetime import datetime

from .certificates import CertificateFetcher
from .config import WebhookConfig
from .errors import RejectionCode, WebhookRejected
from .events import Provider, WebhookResult
from .mailgun import verify_and_map_mailgun
from .postmark import verify_and_map_postmark
from .replay import ReplayCache
from .sendgrid import verify_and_map_sendgrid
from .ses import verify_and_map_ses


def _provider(name: str) -> Provider:
    try:
        return Provider(name)
    except ValueError:
        raise WebhookRejected(
            404, f"unknown webhook provider {name[:40]!r}", code=RejectionCode.UNKNOWN_PROVIDER
        ) from None


def _not_configured(provider: Provider) -> WebhookRejected:
    return WebhookRejected(
        404, f"{provider} webhooks are not configured", code=RejectionCode.PROVIDER_NOT_CONFIGURED
    )


def _check_request(method: str, body: bytes, config: WebhookConfig, now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    if method.upper() != "POST":
        raise WebhookRejected(
            405,
            f"method {method[:10]} not allowed; providers POST",
            code=RejectionCode.METHOD_NOT_ALLOWED,
        )
    if len(body) > config.max_body_bytes:
        raise WebhookRejected(
            413,
            f"body of {len(body)} bytes exceeds {config.max_body_bytes}",
            code=RejectionCode.BODY_TOO_LARGE,
        )


async def verify_and_map(
    provider: str,
    *,
    method: str,
    headers: Mapping[str, str],
    body: bytes,
    config: WebhookConfig,
    replay_cache: ReplayCache,
    cert_fetcher: CertificateFetcher,
    now: datetime,
) -> WebhookResult:
    """Authenticate one webhook request and map its content to common events.

    `body` must be the raw request bytes: SendGrid signs them exactly. Batches map every element;
    unknown or malformed elements are listed in `WebhookResult.skipped` instead of failing the
    request. Raise `WebhookRejected` for forged, tampered, stale, replayed, unsigned or wrongly
    signed requests, and `WebhookUnavailable` (503) when the certificate host or the replay cache
    fails. Either error's `status` is the HTTP status to return to the provider.
    """
    selected = _provider(provider)
    _check_request(method, body, config, now)

    if selected is Provider.SENDGRID and config.sendgrid is not None:
        return verify_and_map_sendgrid(headers, body, config.sendgrid, now=now)
    if selected is Provider.MAILGUN and config.mailgun is not None:
        return await verify_and_map_mailgun(
            body, config.mailgun, replay_cache=replay_cache, now=now
        )
    if selected is Provider.POSTMARK and config.postmark is not None:
        return verify_and_map_postmark(headers, body, config.postmark)
    if selected is Provider.SES and config.ses is not None:
        return await verify_and_map_ses(
            headers, body, config.ses, cert_fetcher=cert_fetcher, now=now
        )
    raise _not_configured(selected)
