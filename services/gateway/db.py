"""The gateway service's table registry and its outbox and processed-event tables."""

from services.kit.db import service_base
from services.kit.outbox import OutboxColumns, ProcessedEventColumns

GatewayBase = service_base("gateway")


class OutboxMessage(GatewayBase, OutboxColumns, table=True):  # type: ignore[call-arg]
    __tablename__ = "outbox"


class ProcessedEvent(GatewayBase, ProcessedEventColumns, table=True):  # type: ignore[call-arg]
    __tablename__ = "processed_event"
