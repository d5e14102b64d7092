"""Every table of the scoring service, imported so its metadata is complete for migrations."""

from services.scoring.db import OutboxMessage, ProcessedEvent, ScoringBase
from services.scoring.history.models import ContactFacts, ScoredEvent
from services.scoring.scores.models import ContactScore

metadata = ScoringBase.metadata

__all__ = ["ContactFacts", "ContactScore", "OutboxMessage", "ProcessedEvent", "ScoredEvent", "ScoringBase", "metadata"]
