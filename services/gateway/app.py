"""The gateway: the one public API in front of the other services."""

import httpx
from fastapi import FastAPI
from starlette.middleware import Middleware

from services.gateway.dashboard.router import router as dashboard_router
from services.gateway.delivery.service import DeliveryQueue
from services.gateway.errors import install_gateway_problems
from services.gateway.idempotency.middleware import IdempotencyMiddleware
from services.gateway.limits.body import BodySizeLimit, LimitForPath
from services.gateway.limits.rate import RateLimiter, RateLimitHeaders
from services.gateway.openapi import install_openapi
from services.gateway.receipts.service import WebhookVerifier
from services.gateway.routes import (
    contacts,
    events,
    imports,
    reports,
    scoring,
    segments,
    sequences,
    stages,
    templates,
    tracking,
    webhooks,
)
from services.gateway.settings import GatewaySettings
from services.gateway.tracking.service import HitClassifier
from services.gateway.webhooks import CertificateFetcher, RedisReplayCache
from services.kit.app import create_service_app
from services.kit.tokens import TokenSigner

DESCRIPTION = """\
Public API of the nurture lead-nurturing platform.

Send an API key as `Authorization: Bearer <key>`; each route needs one scope (`<area>:read` or
`<area>:write`, write includes read). Errors are RFC 9457 problem details
(`application/problem+json`) whose `errors` list names each invalid field. Lists take `limit` and
`cursor` and return `{"items": [...], "next_cursor": ...}`. POST requests honour `Idempotency-Key`.
Each API key has a rate limit, reported in `RateLimit-Limit`, `RateLimit-Remaining` and
`RateLimit-Reset`; past it the answer is 429 with `Retry-After`.

Tracking links (`/t/...`), unsubscribe pages (`/u/...`) and provider webhooks (`/v1/webhooks/...`)
need no API key: signed tokens and the providers' own signatures authenticate them.
"""


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    app = create_service_app(
        settings,
        title="nurture",
        version="1",
        description=DESCRIPTION,
        routers=[
            contacts.router,
            events.router,
            imports.router,
            segments.router,
            stages.router,
            scoring.router,
            sequences.router,
            templates.router,
            reports.router,
            tracking.router,
            webhooks.router,
            dashboard_router,
        ],
        clients=["contacts", "scoring", "sequencer"],
        internal=False,
        on_startup=[_open_gateway_state],
        on_shutdown=[_close_gateway_state],
    )
    install_gateway_problems(app)
    install_openapi(app)

    # Appended after the shared middleware (correlation ids, metrics), so these run inside it and
    # their responses carry a correlation id too. The first in the list is the outermost.
    app.user_middleware.append(Middleware(BodySizeLimit, limit_for_path=body_limits(settings)))
    app.user_middleware.append(Middleware(RateLimitHeaders))
    app.user_middleware.append(Middleware(IdempotencyMiddleware))
    return app


def body_limits(settings: GatewaySettings) -> LimitForPath:
    """Return the body limit of each path: webhooks and CSV imports have their own."""

    def limit_for_path(path: str) -> int:
        if path.startswith("/v1/webhooks/"):
            return settings.webhook_max_body_bytes
        if path.startswith("/v1/imports"):
            return settings.max_import_bytes
        return settings.max_body_bytes

    return limit_for_path


async def _open_gateway_state(app: FastAPI) -> None:
    settings: GatewaySettings = app.state.settings
    redis = app.state.redis
    app.state.token_signer = TokenSigner(settings.tracking_secret_list())
    app.state.rate_limiter = RateLimiter(
        redis,
        namespace=settings.namespace,
        window_s=settings.rate_limit_window_s,
        default_limit=settings.rate_limit_requests,
    )
    # One pooled client for provider hosts (SNS signing certificates); redirects could lead elsewhere.
    app.state.provider_http = httpx.AsyncClient(
        timeout=httpx.Timeout(settings.webhook_certificate_timeout_s), follow_redirects=False
    )
    app.state.webhook_verifier = WebhookVerifier(
        config=settings.webhook_config(),
        replay_cache=RedisReplayCache(redis, key_prefix=f"{settings.namespace}:gateway:webhook-replay:"),
        cert_fetcher=CertificateFetcher(app.state.provider_http, timeout_s=settings.webhook_certificate_timeout_s),
    )
    app.state.delivery_queue = DeliveryQueue(redis, settings.namespace)
    app.state.hit_classifier = HitClassifier(redis, settings.namespace)


async def _close_gateway_state(app: FastAPI) -> None:
    await app.state.provider_http.aclose()
