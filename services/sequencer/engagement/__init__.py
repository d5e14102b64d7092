"""Engagement: metric definitions and the human/machine classifier for opens and clicks."""

from services.sequencer.engagement.classifier import (
    DEFAULT_RULES,
    BotRules,
    ClassifiedHit,
    HitCounts,
    TrackingHit,
    Verdict,
    classify_hits,
    count_hits,
)
from services.sequencer.engagement.metrics import (
    EmailMetrics,
    MessageEngagement,
    compute_metrics,
    compute_metrics_by,
    rate,
)

__all__ = (
    "DEFAULT_RULES",
    "BotRules",
    "ClassifiedHit",
    "EmailMetrics",
    "HitCounts",
    "MessageEngagement",
    "TrackingHit",
    "Verdict",
    "classify_hits",
    "compute_metrics",
    "compute_metrics_by",
    "count_hits",
    "rate",
)
