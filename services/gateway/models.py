"""Every table of the gateway, imported so its metadata is complete for migrations."""

from services.gateway.db import GatewayBase, OutboxMessage, ProcessedEvent
from services.gateway.idempotency.models import IdempotencyRecord
from services.gateway.keys.models import ApiKey
from services.gateway.receipts.models import WebhookReceipt
from services.gateway.tracking.models import TrackingHit

metadata = GatewayBase.metadata

__all__ = [
    "ApiKey",
    "GatewayBase",
    "IdempotencyRecord",
    "OutboxMessage",
    "ProcessedEvent",
    "TrackingHit",
    "WebhookReceipt",
    "metadata",
]
