"""The gateway's arq worker: delivers webhook receipts and tracking hits, purges idempotency keys."""

import time
from typing import Any

import httpx
from arq.worker import func

from services.gateway.db import ProcessedEvent
from services.gateway.delivery.service import DELIVERY_JOB, Deliverer
from services.gateway.delivery.tables import DELIVERY_MODELS
from services.gateway.idempotency.service import purge_expired
from services.gateway.settings import GatewaySettings
from services.kit.consumer import EventConsumer
from services.kit.logging import get_logger
from services.kit.worker import build_worker_settings

log = get_logger(__name__)

PROVIDER_CLIENT = "provider_http"
PURGE_INTERVAL_S = 60.0


def deliverer_for(ctx: dict[str, Any]) -> Deliverer:
    """Build the deliverer from a worker's context (database, contacts client, provider client)."""
    settings: GatewaySettings = ctx["settings"]
    return Deliverer(
        ctx["db"],
        DELIVERY_MODELS,
        contacts=ctx["clients"]["contacts"],
        provider_http=ctx["clients"].get(PROVIDER_CLIENT),
        max_backoff_s=settings.delivery_max_backoff_s,
    )


async def deliver_row(ctx: dict[str, Any], table: str, row_id: str) -> str:
    """Run as a job: deliver one new receipt or tracking hit."""
    return await deliverer_for(ctx).deliver(table, row_id)


async def sweep_deliveries(ctx: dict[str, Any]) -> None:
    """Deliver rows whose job was lost or whose retry is due; the database is the system of record."""
    delivered = await deliverer_for(ctx).sweep()
    if delivered:
        log.info("delivery.sweep_delivered", rows=delivered)


async def purge_idempotency_records(ctx: dict[str, Any]) -> None:
    """Delete expired Idempotency-Key records, at most once a minute."""
    now = time.monotonic()
    if now - ctx.get("idempotency_purged_at", 0.0) < PURGE_INTERVAL_S:
        return
    ctx["idempotency_purged_at"] = now
    purged = await purge_expired(ctx["db"])
    if purged:
        log.info("idempotency.purged", records=purged)


async def _open_provider_client(ctx: dict[str, Any]) -> None:
    # Kept among the clients so the worker's shutdown closes it with the others.
    ctx["clients"][PROVIDER_CLIENT] = httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=False)


def worker_settings(settings: GatewaySettings | None = None) -> type:
    settings = settings or GatewaySettings()
    consumer = EventConsumer(ProcessedEvent, {})
    return build_worker_settings(
        settings,
        functions=[*consumer.functions(), func(deliver_row, name=DELIVERY_JOB, max_tries=3)],  # type: ignore[arg-type]
        clients=["contacts"],
        periodic=[sweep_deliveries, purge_idempotency_records],
        on_startup=[_open_provider_client],
    )
