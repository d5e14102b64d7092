"""The sequencer service's table registry and its outbox and processed-event tables."""

from services.kit.db import service_base
from services.kit.outbox import OutboxColumns, ProcessedEventColumns

SequencerBase = service_base("sequencer")


class OutboxMessage(SequencerBase, OutboxColumns, table=True):  # type: ignore[call-arg]
    __tablename__ = "outbox"


class ProcessedEvent(SequencerBase, ProcessedEventColumns, table=True):  # type: ignore[call-arg]
    __tablename__ = "processed_event"
