"""Every table of the sequencer service, imported so its metadata is complete for migrations."""

from services.sequencer.db import OutboxMessage, ProcessedEvent, SequencerBase

metadata = SequencerBase.metadata

__all__ = ["OutboxMessage", "ProcessedEvent", "SequencerBase", "metadata"]
