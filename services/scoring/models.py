"""Every table of the scoring service, imported so its metadata is complete for migrations."""

from services.scoring.db import OutboxMessage, ProcessedEvent, ScoringBase
from services.scoring.history.models import ContactFacts, ErasedContact, ScoredEvent
from services.scoring.jobs.models import ScoringJob
from services.scoring.rulesets.models import RuleSetVersion, ScoreModel
from services.scoring.scores.models import ContactScore, LedgerRow
from services.scoring.thresholds.models import ScoreThreshold, ThresholdFiring, ThresholdState

metadata = ScoringBase.metadata

__all__ = [
    "ContactFacts",
    "ContactScore",
    "ErasedContact",
    "LedgerRow",
    "OutboxMessage",
    "ProcessedEvent",
    "RuleSetVersion",
    "ScoreModel",
    "ScoreThreshold",
    "ScoredEvent",
    "ScoringBase",
    "ScoringJob",
    "ThresholdFiring",
    "ThresholdState",
    "metadata",
]
