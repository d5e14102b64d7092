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
    add_metrics,
    compute_metrics,
    compute_metrics_by,
    metrics_from_counts,
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
    "add_metrics",
    "classify_hits",
    "compute_metrics",
    "compute_metrics_by",
    "count_hits",
    "metrics_from_counts",
    "rate",
)
