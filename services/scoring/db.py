"""The scoring service's table registry and its outbox and processed-event tables."""

from services.kit.db import service_base
from services.kit.outbox import OutboxColumns, ProcessedEventColumns

ScoringBase = service_base("scoring")


class OutboxMessage(ScoringBase, OutboxColumns, table=True):  # type: ignore[call-arg]
    __tablename__ = "outbox"


class ProcessedEvent(ScoringBase, ProcessedEventColumns, table=True):  # type: ignore[call-arg]
    __tablename__ = "processed_event"
