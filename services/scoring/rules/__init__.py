"""Lead-scoring rules: the rule-set format, its validation and compilation, matching, scoring.

The library is pure: it reads no clock, database or network. The scoring service passes in the
contact, the event, the recent events and the ledger it stores, and writes back what comes out.
Only `engine.py` imports durable_rules.

Typical flow for one event:

    compiled = load_rule_set(document)                      # once per rule-set version
    matches = match_event(compiled, contact=contact, event=event, recent_events=recent)
    totals = LedgerTotals.from_entries(compiled.rule_set, ledger)
    new_entries = award(compiled.rule_set, matches, totals=totals)
    score = compute_score(compiled.rule_set, [*ledger, *new_entries], now=now)
    crossing = cross_threshold(previous=old_total, new=score.total,
                               threshold=compiled.mql_threshold, already_fired=fired)
"""

from services.scoring.rules.calibration import (
    Calibration,
    DecileStat,
    ThresholdChoice,
    calibrate,
    decile_conversion,
    roc_auc,
    youden_threshold,
)
from services.scoring.rules.compiler import CompiledRuleSet, compile_rule_set
from services.scoring.rules.errors import EngineError, RuleError, RuleSetInvalid, ScoringInputError
from services.scoring.rules.matching import RuleMatch, match_event, match_fit
from services.scoring.rules.model import (
    Cap,
    CapPeriod,
    EngagementRule,
    FitRule,
    Operator,
    PatternRule,
    RuleKind,
    RuleSet,
)
from services.scoring.rules.replay import Replay, replay, replay_many
from services.scoring.rules.scorer import (
    EntryReason,
    EntryScore,
    LedgerEntry,
    LedgerTotals,
    ScoreBreakdown,
    ScoreTally,
    award,
    compute_score,
    fit_changes,
    fit_points,
    period_start,
)
from services.scoring.rules.threshold import ThresholdCrossing, cross_threshold
from services.scoring.rules.validation import (
    load_rule_set,
    parse_rule_set,
    parse_rule_set_json,
    parse_rule_set_yaml,
)

__all__ = (
    "Calibration",
    "Cap",
    "CapPeriod",
    "CompiledRuleSet",
    "DecileStat",
    "EngagementRule",
    "EngineError",
    "EntryReason",
    "EntryScore",
    "FitRule",
    "LedgerEntry",
    "LedgerTotals",
    "Operator",
    "PatternRule",
    "Replay",
    "RuleError",
    "RuleKind",
    "RuleMatch",
    "RuleSet",
    "RuleSetInvalid",
    "ScoreBreakdown",
    "ScoreTally",
    "ScoringInputError",
    "ThresholdChoice",
    "ThresholdCrossing",
    "award",
    "calibrate",
    "compile_rule_set",
    "compute_score",
    "cross_threshold",
    "decile_conversion",
    "fit_changes",
    "fit_points",
    "load_rule_set",
    "match_event",
    "match_fit",
    "parse_rule_set",
    "parse_rule_set_json",
    "parse_rule_set_yaml",
    "period_start",
    "replay",
    "replay_many",
    "roc_auc",
    "youden_threshold",
)
