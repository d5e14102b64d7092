"""Compilation of a validated rule set into rules-engine programs.

A program is a durable_rules JSON ruleset plus the layout of the facts it expects. Contact and
event documents are nested and loosely typed. A layout flattens each referenced field into one
fact property per value type, so a value of the wrong type is absent from the fact and its
conditions are false instead of raising.

Text operators (`contains`, `starts_with`, `ends_with`, `matches`) and `exists` run in Python
while the facts are built, and reach the engine as boolean properties. durable_rules 2.0.28 has
its own regular-expression dialect (whole-string matches, no anchors or character classes such as
\\d, byte-wise case folding), so rule authors get RE2 (see `regex_safety.py`) with `search`
semantics instead, and no pattern reaches the engine.
The engine evaluates everything else: equality, ordering, membership, the and/or structure, the
join with the contact and the ordering and time window of pattern steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from services.scoring.rules.engine import DurableRulesEngine, EngineDefinitionError, RulesEngine
from services.scoring.rules.errors import RuleError, RuleSetInvalid
from services.scoring.rules.model import (
    NUMBER_DECIMALS,
    ORDERING_OPERATORS,
    PREDICATE_OPERATORS,
    AllCondition,
    AnyCondition,
    Condition,
    EngagementRule,
    FieldCondition,
    FitRule,
    Operator,
    PatternRule,
    RuleKind,
    RuleSet,
)
from services.scoring.rules.regex_safety import CompiledPattern, compile_pattern

CONTACT_ALIAS = "c"
SECONDS_PER_DAY = 86_400

# Fact properties that the compiler writes itself. Layout keys start with c or f and a digit or p,
# so they never collide with these.
KIND_KEY = "k"
TYPE_KEY = "t"
TIME_KEY = "ts"
CURRENT_KEY = "cur"
CONTACT_KIND = "c"
EVENT_KIND = "e"

# durable_rules 2.0.28 rejects a fact with more than about 250 properties.
MAX_FACT_PROPERTIES = 200


class ValueKind(StrEnum):
    NUMBER = "n"
    TEXT = "s"
    FOLDED_TEXT = "i"
    BOOLEAN = "b"


@dataclass(frozen=True, slots=True)
class FieldSlot:
    """A fact property holding the value at `path` when it has the type `kind`."""

    key: str
    path: tuple[str, ...]
    kind: ValueKind


@dataclass(frozen=True, slots=True)
class PredicateSlot:
    """A boolean fact property: a text or presence test on the value at `path`, run in Python.

    `event_types` limits the test to events of those types, and None means every document.
    """

    key: str
    path: tuple[str, ...]
    op: Operator
    value: str | None
    case_sensitive: bool
    pattern: CompiledPattern | None
    event_types: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class FactLayout:
    fields: tuple[FieldSlot, ...]
    predicates: tuple[PredicateSlot, ...]

    @property
    def size(self) -> int:
        return len(self.fields) + len(self.predicates)


@dataclass(frozen=True, slots=True)
class EngineRule:
    """How a rule key of the engine maps back to a rule of the rule set.

    `steps` contains the event aliases in step order. `has_contact` tells whether the contact
    fact is joined under CONTACT_ALIAS.
    """

    key: str
    rule_name: str
    rule_index: int
    kind: RuleKind
    points: int
    steps: tuple[str, ...]
    has_contact: bool


@dataclass(frozen=True, slots=True)
class Program:
    """A durable_rules ruleset definition and the layouts of the facts it reads."""

    definition: Mapping[str, Mapping[str, Any]]
    rules: Mapping[str, EngineRule]
    contact_layout: FactLayout | None
    event_layout: FactLayout | None


@dataclass(frozen=True, slots=True)
class Plan:
    fit: Program
    events: Program
    history_window: timedelta


def _named_event_types(rule_set: RuleSet) -> frozenset[str]:
    """Return the event types that the engagement rules and pattern steps name."""
    types: set[str] = set()
    for rule in rule_set.rules:
        if isinstance(rule, EngagementRule):
            types.add(rule.event)
        elif isinstance(rule, PatternRule):
            types.update(step.event for step in rule.steps)
    return frozenset(types)


class CompiledRuleSet:
    """A rule set ready to evaluate: the validated model and one engine per program.

    Evaluation is safe from several threads (each engine serialises its evaluations). Call
    `close()`, or use it as a context manager, to free the native rulesets promptly. Otherwise
    they are freed when the object is garbage-collected.
    """

    def __init__(self, rule_set: RuleSet, plan: Plan) -> None:
        self.rule_set = rule_set
        self.plan = plan
        self.fit_engine: RulesEngine | None = _engine_for(plan.fit)
        self.event_engine: RulesEngine | None = _engine_for(plan.events)
        self.event_types = _named_event_types(rule_set)

    @property
    def history_window(self) -> timedelta:
        """How far before and after an event `recent_events` must reach for pattern rules."""
        return self.plan.history_window

    @property
    def mql_threshold(self) -> float:
        return self.rule_set.mql_threshold

    def close(self) -> None:
        for engine in (self.fit_engine, self.event_engine):
            if engine is not None:
                engine.close()

    def __enter__(self) -> CompiledRuleSet:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def compile_rule_set(rule_set: RuleSet) -> CompiledRuleSet:
    """Compile a validated rule set, raising RuleSetInvalid that names each rule the engine rejects."""
    plan = build_plan(rule_set)
    errors = _layout_errors(plan)
    if errors:
        raise RuleSetInvalid(errors)
    try:
        return CompiledRuleSet(rule_set, plan)
    except EngineDefinitionError as error:
        raise RuleSetInvalid(_engine_errors(plan, error)) from None


def build_plan(rule_set: RuleSet) -> Plan:
    """Translate a rule set into engine programs without creating any engine."""
    fit = _ProgramBuilder()
    events = _ProgramBuilder()
    for index, rule in enumerate(rule_set.rules):
        if isinstance(rule, FitRule):
            fit.add_fit(index, rule)
        elif isinstance(rule, EngagementRule):
            events.add_engagement(index, rule)
        else:
            events.add_pattern(index, rule)

    windows = [rule.within_days for rule in rule_set.rules if isinstance(rule, PatternRule)]
    history_window = timedelta(days=max(windows, default=0))
    return Plan(fit=fit.build(), events=events.build(), history_window=history_window)


def _engine_for(program: Program) -> RulesEngine | None:
    if not program.definition:
        return None
    return DurableRulesEngine(program.definition)


class _LayoutBuilder:
    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._fields: dict[tuple[tuple[str, ...], ValueKind], str] = {}
        self._predicates: dict[tuple[Any, ...], str] = {}
        self._predicate_types: dict[str, set[str] | None] = {}
        self._predicate_specs: dict[str, FieldCondition] = {}

    @property
    def used(self) -> bool:
        return bool(self._fields or self._predicates)

    def field(self, path: tuple[str, ...], kind: ValueKind) -> str:
        slot = (path, kind)
        if slot not in self._fields:
            self._fields[slot] = f"{self._prefix}{len(self._fields)}{kind.value}"
        return self._fields[slot]

    def predicate(self, condition: FieldCondition, event_type: str | None) -> str:
        identity = (condition.field, condition.op, _freeze(condition.value), condition.case_sensitive)
        key = self._predicates.get(identity)
        if key is None:
            key = f"{self._prefix}p{len(self._predicates)}"
            self._predicates[identity] = key
            self._predicate_specs[key] = condition
            self._predicate_types[key] = set()

        types = self._predicate_types[key]
        if event_type is None:
            self._predicate_types[key] = None
        elif types is not None:
            types.add(event_type)
        return key

    def build(self) -> FactLayout | None:
        if not self.used:
            return None
        fields = tuple(FieldSlot(key=key, path=path, kind=kind) for (path, kind), key in self._fields.items())
        predicates = tuple(self._predicate_slot(key) for key in self._predicate_specs)
        return FactLayout(fields=fields, predicates=predicates)

    def _predicate_slot(self, key: str) -> PredicateSlot:
        condition = self._predicate_specs[key]
        types = self._predicate_types[key]
        return PredicateSlot(
            key=key,
            path=tuple(condition.field.split(".")),
            op=condition.op,
            value=condition.value,
            case_sensitive=condition.case_sensitive,
            pattern=_compile_pattern(condition),
            event_types=None if types is None else frozenset(types),
        )


@dataclass
class _ProgramBuilder:
    definition: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, EngineRule] = field(default_factory=dict)
    contact: _LayoutBuilder = field(default_factory=lambda: _LayoutBuilder("c"))
    event: _LayoutBuilder = field(default_factory=lambda: _LayoutBuilder("f"))

    def add_fit(self, index: int, rule: FitRule) -> None:
        test = _and([{KIND_KEY: CONTACT_KIND}, self._condition(rule.when, self.contact, None)])
        self._add(index, rule.name, RuleKind.FIT, rule.points, f"r{index}", [(CONTACT_ALIAS, test)])

    def add_engagement(self, index: int, rule: EngagementRule) -> None:
        tests: list[dict[str, Any]] = [
            {KIND_KEY: EVENT_KIND},
            {CURRENT_KEY: 1},
            {TYPE_KEY: rule.event},
        ]
        if rule.where is not None:
            tests.append(self._condition(rule.where, self.event, rule.event))

        steps = [("e0", _and(tests))]
        steps.extend(self._contact_step(rule.contact_when))
        self._add(index, rule.name, RuleKind.ENGAGEMENT, rule.points, f"r{index}", steps)

    def add_pattern(self, index: int, rule: PatternRule) -> None:
        # One engine rule per position of the current event, so the engine only builds the
        # sequences the current event takes part in.
        window_seconds = round(rule.within_days * SECONDS_PER_DAY, NUMBER_DECIMALS)
        for current in range(len(rule.steps)):
            steps = [
                (f"e{position}", self._pattern_step(rule, position, current, window_seconds))
                for position in range(len(rule.steps))
            ]
            steps.extend(self._contact_step(rule.contact_when))
            key = f"r{index}_{current}"
            self._add(index, rule.name, RuleKind.PATTERN, rule.points, key, steps)

    def build(self) -> Program:
        return Program(
            definition=self.definition,
            rules=self.rules,
            contact_layout=self.contact.build(),
            event_layout=self.event.build(),
        )

    def _pattern_step(
        self, rule: PatternRule, position: int, current: int, window_seconds: float
    ) -> dict[str, Any]:
        step = rule.steps[position]
        tests: list[dict[str, Any]] = [{KIND_KEY: EVENT_KIND}, {TYPE_KEY: step.event}]
        if position == current:
            tests.append({CURRENT_KEY: 1})
        if step.where is not None:
            tests.append(self._condition(step.where, self.event, step.event))
        if position > 0:
            # Strictly after the previous step, and no later than the window after the first.
            tests.append({"$gt": {TIME_KEY: {f"e{position - 1}": TIME_KEY}}})
            window_end = {"$add": {"$l": {"e0": TIME_KEY}, "$r": window_seconds}}
            tests.append({"$lte": {TIME_KEY: window_end}})
        return _and(tests)

    def _contact_step(self, condition: Condition | None) -> list[tuple[str, dict[str, Any]]]:
        if condition is None:
            return []
        test = _and([{KIND_KEY: CONTACT_KIND}, self._condition(condition, self.contact, None)])
        return [(CONTACT_ALIAS, test)]

    def _add(
        self,
        index: int,
        name: str,
        kind: RuleKind,
        points: int,
        key: str,
        steps: list[tuple[str, dict[str, Any]]],
    ) -> None:
        self.definition[key] = {"all": [{alias: test} for alias, test in steps]}
        self.rules[key] = EngineRule(
            key=key,
            rule_name=name,
            rule_index=index,
            kind=kind,
            points=points,
            steps=tuple(alias for alias, _test in steps if alias != CONTACT_ALIAS),
            has_contact=any(alias == CONTACT_ALIAS for alias, _test in steps),
        )

    def _condition(
        self, condition: Condition, layout: _LayoutBuilder, event_type: str | None
    ) -> dict[str, Any]:
        if isinstance(condition, AllCondition):
            return _and([self._condition(part, layout, event_type) for part in condition.all])
        if isinstance(condition, AnyCondition):
            return _or([self._condition(part, layout, event_type) for part in condition.any])
        return _field_test(condition, layout, event_type)


def _field_test(condition: FieldCondition, layout: _LayoutBuilder, event_type: str | None) -> dict[str, Any]:
    op = condition.op
    if op in PREDICATE_OPERATORS:
        return {layout.predicate(condition, event_type): True}

    path = tuple(condition.field.split("."))
    values = condition.value if isinstance(condition.value, list) else [condition.value]
    kind = _value_kind(values[0], condition.case_sensitive)
    key = layout.field(path, kind)
    values = _dedupe([_fold(value, kind) for value in values])

    if op is Operator.EQ:
        return {key: values[0]}
    if op is Operator.NE:
        return {"$neq": {key: values[0]}}
    if op in ORDERING_OPERATORS:
        return {f"${op.value}": {key: values[0]}}
    if op is Operator.BETWEEN:
        return _and([{"$gte": {key: values[0]}}, {"$lte": {key: values[-1]}}])
    if op is Operator.IN:
        return _or([{key: value} for value in values])
    return _and([{"$neq": {key: value}} for value in values])


def _value_kind(value: Any, case_sensitive: bool) -> ValueKind:
    if isinstance(value, bool):
        return ValueKind.BOOLEAN
    if isinstance(value, str):
        return ValueKind.TEXT if case_sensitive else ValueKind.FOLDED_TEXT
    return ValueKind.NUMBER


def _fold(value: Any, kind: ValueKind) -> Any:
    return value.casefold() if kind is ValueKind.FOLDED_TEXT else value


def _dedupe(values: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


def _compile_pattern(condition: FieldCondition) -> CompiledPattern | None:
    if condition.op is not Operator.MATCHES:
        return None
    return compile_pattern(condition.value, case_sensitive=condition.case_sensitive)


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _and(tests: list[dict[str, Any]]) -> dict[str, Any]:
    return tests[0] if len(tests) == 1 else {"$and": tests}


def _or(tests: list[dict[str, Any]]) -> dict[str, Any]:
    return tests[0] if len(tests) == 1 else {"$or": tests}


def _layout_errors(plan: Plan) -> list[RuleError]:
    errors = []
    for label, layout in (
        ("contact", plan.fit.contact_layout),
        ("contact", plan.events.contact_layout),
        ("event", plan.events.event_layout),
    ):
        if layout is not None and layout.size > MAX_FACT_PROPERTIES:
            errors.append(
                RuleError(
                    rule=None,
                    field="rules",
                    message=(
                        f"the rules test {layout.size} distinct {label} fields and text tests, but "
                        f"the engine takes at most {MAX_FACT_PROPERTIES}: merge or remove rules"
                    ),
                )
            )
    return errors


def _engine_errors(plan: Plan, error: EngineDefinitionError) -> list[RuleError]:
    rules = {**plan.fit.rules, **plan.events.rules}
    errors: dict[str, RuleError] = {}
    for key, reason in error.failures.items():
        name = rules[key].rule_name if key in rules else None
        errors[name or key] = RuleError(
            rule=name, field="rules", message=f"the rules engine rejected this rule: {reason}"
        )
    if not errors:
        errors["rules"] = RuleError(rule=None, field="rules", message=str(error))
    return list(errors.values())
