"""Every table of the gateway, imported so its metadata is complete for migrations."""

from services.gateway.db import GatewayBase, OutboxMessage, ProcessedEvent
from services.gateway.keys.models import ApiKey

metadata = GatewayBase.metadata

__all__ = ["ApiKey", "GatewayBase", "OutboxMessage", "ProcessedEvent", "metadata"]
