"""From rule matches to ledger entries and scores: caps, one award per event, decay.

Everything here is pure: the caller passes the contact's ledger and the time (`now`, `at`), and
nothing reads a clock or a database.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from services.scoring.rules.errors import ScoringInputError
from services.scoring.rules.facts import parse_time
from services.scoring.rules.matching import RuleMatch
from services.scoring.rules.model import (
    CapPeriod,
    EngagementRule,
    FitRule,
    HalfLifeDecay,
    LinearDecay,
    PatternRule,
    RuleKind,
    RuleSet,
)

SCORE_DECIMALS = 2
SECONDS_PER_DAY = 86_400

EventRule = EngagementRule | PatternRule


class EntryReason(StrEnum):
    MATCHED = "matched"
    CAPPED = "capped"
    FIT_MATCHED = "fit_matched"
    FIT_UNMATCHED = "fit_unmatched"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One ledger row: a change of a contact's score and the rule and event that explain it.

    `points` is what the row adds to the score, and `rule_points` is what the rule grants per
    match, so a row with `reason=capped` shows both. `event_id` is the ledger key of engagement and
    pattern rows (unique per rule), and None for fit rows.
    """

    rule: str
    kind: RuleKind
    points: int
    rule_points: int
    occurred_at: datetime
    reason: EntryReason
    event_id: str | None = None
    event_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Rows read back from a database carry plain strings, but comparisons below need enums.
        try:
            object.__setattr__(self, "kind", RuleKind(self.kind))
            object.__setattr__(self, "reason", EntryReason(self.reason))
        except ValueError as error:
            raise ScoringInputError("entry", str(error)) from None
        object.__setattr__(self, "event_ids", tuple(self.event_ids))


@dataclass(frozen=True)
class LedgerTotals:
    """The sums and keys of a contact's ledger that caps and repeated events need.

    Attributes:
        lifetime: points per rule name, over all engagement and pattern rows.
        periods: points per (rule name, start of the cap period in UTC), for rules whose cap
            has a period. `period_start` gives the start.
        awarded: (rule name, event id) pairs that already have a row.
    """

    lifetime: Mapping[str, int] = field(default_factory=dict)
    periods: Mapping[tuple[str, datetime], int] = field(default_factory=dict)
    awarded: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def from_entries(cls, rule_set: RuleSet, entries: Iterable[LedgerEntry]) -> LedgerTotals:
        return cls().plus(rule_set, entries)

    def plus(self, rule_set: RuleSet, entries: Iterable[LedgerEntry]) -> LedgerTotals:
        """Return these totals with `entries` added."""
        running = _RunningTotals(self, _event_rules(rule_set))
        for entry in _checked(entries, "entries"):
            running.add(entry)
        return running.freeze()


@dataclass(frozen=True, slots=True)
class EntryScore:
    """A ledger entry and what it is worth at `now` after half-life decay."""

    entry: LedgerEntry
    current_points: float


@dataclass(frozen=True, slots=True)
class ScoreBreakdown:
    """A contact's score at one moment.

    `engagement` is `engagement_before_decay` after half-life decay of each entry and after
    `linear_decay`, the reduction for inactivity (zero or of opposite sign to the points it
    reduces). `total` is `fit + engagement`, rounded to 2 decimal places.
    """

    total: float
    fit: int
    engagement: float
    engagement_before_decay: int
    linear_decay: float
    entries: tuple[EntryScore, ...]


def period_start(period: CapPeriod, at: datetime) -> datetime:
    """Return the start, in UTC, of the calendar day, ISO week (Monday) or month holding `at`."""
    moment = at.astimezone(UTC)
    day = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    if period is CapPeriod.DAY:
        return day
    if period is CapPeriod.WEEK:
        return day - timedelta(days=moment.weekday())
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def award(
    rule_set: RuleSet, matches: Iterable[RuleMatch], *, totals: LedgerTotals | None = None
) -> list[LedgerEntry]:
    """Turn engagement and pattern matches into ledger entries, honouring caps and repeats.

    A (rule, event id) pair in `totals.awarded`, or seen earlier in `matches`, earns nothing.
    A capped rule earns what is left of its cap, possibly 0. The row is still returned, with
    `reason=capped`, so the ledger explains why an event earned less. Matches are processed in
    rule-set order, then by time and event id, whatever order they come in.
    """
    rules = _event_rules(rule_set)
    running = _RunningTotals(totals or LedgerTotals(), rules)
    order = {rule.name: index for index, rule in enumerate(rule_set.rules)}
    entries = []
    for match in sorted(matches, key=lambda item: _match_order(item, order)):
        rule = _event_rule_for(match, rules)
        assert match.event_id is not None and match.occurred_at is not None
        if running.was_awarded(rule.name, match.event_id):
            continue

        entry = _entry_for(rule, match, running.allowance(rule, match.occurred_at))
        running.add(entry)
        entries.append(entry)
    return entries


def fit_changes(
    rule_set: RuleSet,
    matches: Iterable[RuleMatch],
    *,
    current: Mapping[str, int],
    at: datetime,
) -> list[LedgerEntry]:
    """Return the fit rows that bring the ledger to the fit rules matched now.

    `current` contains the fit points per rule in the ledger now (see `fit_points`). A rule that
    starts to match gets its points, one that stops gets them taken back, and a rule no longer in
    the rule set has its points removed. Nothing is returned when nothing changed.
    """
    moment = parse_time(at, "at")
    matched = {match.rule for match in matches if match.kind is RuleKind.FIT}
    entries = []
    fit_rules = [rule for rule in rule_set.rules if isinstance(rule, FitRule)]
    for rule in fit_rules:
        target = rule.points if rule.name in matched else 0
        delta = target - current.get(rule.name, 0)
        if delta:
            reason = EntryReason.FIT_MATCHED if target else EntryReason.FIT_UNMATCHED
            entries.append(_fit_entry(rule.name, delta, rule.points, moment, reason))

    known = {rule.name for rule in fit_rules}
    for name in sorted(set(current) - known):
        if current[name]:
            entries.append(_fit_entry(name, -current[name], 0, moment, EntryReason.FIT_UNMATCHED))
    return entries


def fit_points(entries: Iterable[LedgerEntry]) -> dict[str, int]:
    """Return the fit points per rule that `entries` add up to, leaving out rules at 0."""
    totals: dict[str, int] = {}
    for entry in entries:
        if entry.kind is RuleKind.FIT:
            totals[entry.rule] = totals.get(entry.rule, 0) + entry.points
    return {rule: points for rule, points in totals.items() if points}


def compute_score(
    rule_set: RuleSet,
    entries: Iterable[LedgerEntry],
    *,
    now: datetime,
    last_activity_at: datetime | None = None,
) -> ScoreBreakdown:
    """Add up a contact's ledger at `now`, decaying engagement and pattern points.

    Each rule decays by its own `decay`, or else by the rule set's `decay`. A row of a rule
    that is no longer in the rule set decays by the rule set's `decay`. Fit points never decay.
    Linear decay starts from `last_activity_at`, by default the time of the latest engagement or
    pattern row whose rule grants positive points. Sums use math.fsum, which rounds correctly, so
    the order of `entries` does not change the result.
    """
    return ScoreTally(rule_set, entries, now=now).breakdown(last_activity_at=last_activity_at)


class ScoreTally:
    """The parts of a contact's score at one instant, kept so that new ledger entries are added cheaply.

    A busy contact's ledger has thousands of rows, and each event adds one or two. Adding them to
    a tally costs in proportion to the new rows, where adding up the ledger again costs in
    proportion to all of them, on every event. `breakdown()` equals what `compute_score` returns
    for the same rows.
    """

    def __init__(self, rule_set: RuleSet, entries: Iterable[LedgerEntry], *, now: datetime) -> None:
        # The sort is stable, so rows with equal keys keep the order they came in, as `add` keeps it.
        keyed = [(_entry_order(entry), entry) for entry in _checked(entries, "entries")]
        keyed.sort(key=lambda pair: pair[0])
        self._start(rule_set, now, [key for key, _ in keyed], [entry for _, entry in keyed])

    def at(self, now: datetime) -> ScoreTally:
        """Return a tally of the same entries at another instant, without checking and sorting them again."""
        tally = ScoreTally.__new__(ScoreTally)
        tally._start(self.rule_set, now, list(self._keys), [item.entry for item in self._scored])
        return tally

    def _start(self, rule_set: RuleSet, now: datetime, keys: list[tuple[object, ...]], ordered: list[LedgerEntry]) -> None:
        self.rule_set = rule_set
        self.now = parse_time(now, "now")
        self._rules = _event_rules(rule_set)
        self._keys = keys
        self._fit = 0
        self._engagement_before_decay = 0
        self._engagement_points: list[float] = []
        self._linear_points: list[int] = []
        self._linear: LinearDecay | None = None
        self._last_activity: datetime | None = None
        self._breakdown: ScoreBreakdown | None = None
        self._scored = [self._count(entry) for entry in ordered]

    def add(self, entries: Iterable[LedgerEntry]) -> None:
        """Add new ledger entries, each after the entries already there with an equal sort key."""
        for entry in _checked(entries, "entries"):
            key = _entry_order(entry)
            index = bisect_right(self._keys, key)
            self._keys.insert(index, key)
            self._scored.insert(index, self._count(entry))
        self._breakdown = None

    def breakdown(self, *, last_activity_at: datetime | None = None) -> ScoreBreakdown:
        """Return the score of the entries added so far; see `compute_score`."""
        if last_activity_at is None and self._breakdown is not None:
            return self._breakdown

        activity = self._last_activity if last_activity_at is None else parse_time(last_activity_at, "last_activity_at")
        linear_decay = _linear_decay(self._linear, math.fsum(self._linear_points), activity, self.now)
        engagement = math.fsum([*self._engagement_points, linear_decay])
        breakdown = ScoreBreakdown(
            total=_round(self._fit + engagement),
            fit=self._fit,
            engagement=_round(engagement),
            engagement_before_decay=self._engagement_before_decay,
            linear_decay=_round(linear_decay),
            entries=tuple(self._scored),
        )
        if last_activity_at is None:
            self._breakdown = breakdown
        return breakdown

    def _count(self, entry: LedgerEntry) -> EntryScore:
        """Add one entry to the sums and return what it is worth now."""
        if entry.kind is RuleKind.FIT:
            self._fit += entry.points
            return EntryScore(entry=entry, current_points=float(entry.points))

        decay = _effective_decay(self.rule_set, self._rules.get(entry.rule))
        if isinstance(decay, LinearDecay):
            # Only the rule set has linear decay, so every such row carries the same spec.
            self._linear_points.append(entry.points)
            self._linear = decay
        if entry.rule_points > 0 and (self._last_activity is None or entry.occurred_at > self._last_activity):
            self._last_activity = entry.occurred_at

        item = EntryScore(entry=entry, current_points=_decayed(entry, decay, self.now))
        self._engagement_before_decay += entry.points
        self._engagement_points.append(item.current_points)
        return item


def _decayed(entry: LedgerEntry, decay: object, now: datetime) -> float:
    if not isinstance(decay, HalfLifeDecay):
        return float(entry.points)
    age_days = max(0.0, (now - entry.occurred_at).total_seconds() / SECONDS_PER_DAY)
    return entry.points * float(0.5 ** (age_days / decay.half_life_days))


def _linear_decay(
    spec: LinearDecay | None, points: float, last_activity: datetime | None, now: datetime
) -> float:
    if spec is None or last_activity is None or points == 0:
        return 0.0
    idle_days = (now - last_activity).total_seconds() / SECONDS_PER_DAY
    reduction = spec.points_per_day * max(0.0, idle_days - spec.grace_days)
    # Decay moves the points towards zero and never past it.
    return float(-math.copysign(min(abs(points), reduction), points))


def _effective_decay(rule_set: RuleSet, rule: EventRule | None) -> object:
    if rule is not None and rule.decay is not None:
        return rule.decay
    return rule_set.decay


class _RunningTotals:
    def __init__(self, totals: LedgerTotals, rules: Mapping[str, EventRule]) -> None:
        self.rules = rules
        self.lifetime = dict(totals.lifetime)
        self.periods = dict(totals.periods)
        self.awarded = set(totals.awarded)

    def was_awarded(self, rule: str, event_id: str) -> bool:
        return (rule, event_id) in self.awarded

    def allowance(self, rule: EventRule, at: datetime) -> int | None:
        """Return the points magnitude the rule's cap still allows, or None without a cap."""
        cap = rule.cap
        if cap is None:
            return None
        if cap.period is None:
            used = self.lifetime.get(rule.name, 0)
        else:
            used = self.periods.get((rule.name, period_start(cap.period, at)), 0)
        return max(0, cap.max_points - abs(used))

    def add(self, entry: LedgerEntry) -> None:
        if entry.kind is RuleKind.FIT:
            return
        self.lifetime[entry.rule] = self.lifetime.get(entry.rule, 0) + entry.points
        if entry.event_id is not None:
            self.awarded.add((entry.rule, entry.event_id))

        rule = self.rules.get(entry.rule)
        if rule is not None and rule.cap is not None and rule.cap.period is not None:
            key = (entry.rule, period_start(rule.cap.period, entry.occurred_at))
            self.periods[key] = self.periods.get(key, 0) + entry.points

    def freeze(self) -> LedgerTotals:
        return LedgerTotals(
            lifetime=dict(self.lifetime),
            periods=dict(self.periods),
            awarded=frozenset(self.awarded),
        )


def _entry_for(rule: EventRule, match: RuleMatch, allowance: int | None) -> LedgerEntry:
    requested = abs(rule.points)
    magnitude = requested if allowance is None else min(requested, allowance)
    assert match.occurred_at is not None
    return LedgerEntry(
        rule=rule.name,
        kind=RuleKind(rule.kind),
        points=magnitude if rule.points > 0 else -magnitude,
        rule_points=rule.points,
        occurred_at=match.occurred_at,
        reason=EntryReason.MATCHED if magnitude == requested else EntryReason.CAPPED,
        event_id=match.event_id,
        event_ids=match.event_ids or ((match.event_id,) if match.event_id else ()),
    )


def _fit_entry(rule: str, points: int, rule_points: int, at: datetime, reason: EntryReason) -> LedgerEntry:
    return LedgerEntry(
        rule=rule,
        kind=RuleKind.FIT,
        points=points,
        rule_points=rule_points,
        occurred_at=at,
        reason=reason,
    )


def _event_rules(rule_set: RuleSet) -> dict[str, EventRule]:
    return {rule.name: rule for rule in rule_set.rules if isinstance(rule, EngagementRule | PatternRule)}


def _event_rule_for(match: RuleMatch, rules: Mapping[str, EventRule]) -> EventRule:
    if match.kind is RuleKind.FIT or match.event_id is None or match.occurred_at is None:
        raise ScoringInputError(
            "matches", f"match of rule {match.rule!r} has no event. Pass fit matches to fit_changes"
        )
    rule = rules.get(match.rule)
    if rule is None:
        raise ScoringInputError("matches", f"rule {match.rule!r} is not an event rule of this rule set")
    return rule


def _match_order(match: RuleMatch, order: Mapping[str, int]) -> tuple[object, ...]:
    return (order.get(match.rule, len(order)), match.occurred_at, match.event_id or "", match.event_ids)


def _entry_order(entry: LedgerEntry) -> tuple[object, ...]:
    return (entry.occurred_at, entry.kind.value, entry.rule, entry.event_id or "", entry.points)


def _checked(entries: Iterable[LedgerEntry], field_name: str) -> list[LedgerEntry]:
    checked = list(entries)
    for index, entry in enumerate(checked):
        if not isinstance(entry, LedgerEntry):
            raise ScoringInputError(f"{field_name}[{index}]", "must be a LedgerEntry")
        parse_time(entry.occurred_at, f"{field_name}[{index}].occurred_at")
    return checked


def _round(value: float) -> float:
    rounded = round(value, SCORE_DECIMALS)
    return 0.0 if rounded == 0 else rounded
