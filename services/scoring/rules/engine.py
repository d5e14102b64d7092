"""The one module that talks to durable_rules (version 2.0.28, pinned in pyproject.toml).

Everything else in the scoring library uses only `RulesEngine`: a ruleset definition goes in,
facts go in, matches come out. Replacing the engine means replacing this file.

How durable_rules is used, and why:

- Each evaluation runs in a fresh session (`sid`, a random UUID) and the session is deleted
  afterwards, so no state survives between evaluations and the result depends only on the facts
  passed in. durable_rules keeps sessions in process memory, where a second replica cannot read
  them.
- Everything is asserted as a fact, never posted as an event: durable_rules hands an event to the
  first rule that matches and consumes it, while a fact is offered to every rule.
- A fact that no rule accepts raises `MessageNotHandledException`. That is the normal outcome for
  an event no rule scores, so it is counted, not raised.
- A fact whose `id` is already in the session raises `MessageObservedException`. The first copy
  is kept and the repeat is counted.
- Every session starts with a `session` fact that a built-in rule accepts. In durable_rules 2.0.28,
  `delete_state` crashes the process (segmentation fault) for a session whose actions were never
  started, which is the case when no fact matched. The session rule guarantees one action, so
  the actions always run before the session is deleted.
- The `Host` class is not used: it starts timer threads that dispatch actions in the background,
  which could run an action outside the evaluation that asserted its facts.
- Numbers must reach durable_rules in positional notation. Its JSON parser rejects exponents
  (`1e-05`, `1e+16`) with error 204 from `assert_fact`, and `assert_facts` accepts such a batch
  but then crashes the process in `do_actions`. The compiler and the fact builder keep every
  number within 1e15 and 4 decimal places, where Python's JSON output has no exponent, and facts
  are asserted one at a time.
"""

from __future__ import annotations

import logging
import threading
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import durable_rules_engine  # type: ignore[import-not-found]
from durable.engine import (  # type: ignore[import-untyped]
    MessageNotHandledException,
    MessageObservedException,
    Ruleset,
)

from services.scoring.rules.errors import EngineError

logger = logging.getLogger(__name__)

SESSION_RULE = "session"
SESSION_FACT_ID = "session"


@dataclass(frozen=True, slots=True)
class EngineMatch:
    """One firing of one engine rule: the rule's key and the fact bound to each alias."""

    rule_key: str
    facts: Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The matches of one evaluation, with counts of facts the engine did not take."""

    matches: tuple[EngineMatch, ...]
    not_handled: int
    observed: int


class EngineDefinitionError(EngineError):
    """A ruleset definition the engine rejected, with `failures` mapping each failing rule key to why."""

    def __init__(self, failures: Mapping[str, str]) -> None:
        self.failures = dict(failures)
        super().__init__(f"the rules engine rejected rules {sorted(self.failures)}")


class RulesEngine(Protocol):
    def evaluate(self, facts: Sequence[Mapping[str, Any]]) -> Evaluation: ...

    def close(self) -> None: ...


class DurableRulesEngine:
    """A compiled durable_rules ruleset that evaluates each batch of facts in its own session.

    `definition` maps a rule key to a durable_rules rule, `{"all": [{alias: expression}, ...]}`.
    Each fact needs a unique `id` within one evaluation. Evaluations are serialised by a lock,
    because the actions of one ruleset share this object's match list.
    """

    def __init__(self, definition: Mapping[str, Mapping[str, Any]]) -> None:
        self._sink = _MatchSink({key: _aliases_of(rule) for key, rule in definition.items()})
        self._lock = threading.Lock()
        try:
            self._ruleset = _create_ruleset(definition, self._sink.action_for)
        except durable_rules_engine.error:
            raise EngineDefinitionError(check_definition(definition)) from None
        self._closed = False
        # The actions hold the sink, not this object, so the finalizer's reference to the
        # ruleset does not keep this object alive.
        self._finalizer = weakref.finalize(self, _delete_ruleset, self._ruleset)

    def evaluate(self, facts: Sequence[Mapping[str, Any]]) -> Evaluation:
        if self._closed:
            raise EngineError("the rules engine is closed")

        sid = uuid.uuid4().hex
        with self._lock:
            self._sink.matches.clear()
            state = self._ruleset.assert_fact({"sid": sid, "id": SESSION_FACT_ID, "k": SESSION_RULE})
            try:
                not_handled, observed = self._assert_facts(sid, facts)
            finally:
                self._run_actions(state)
                self._ruleset.delete_state(sid)
            matches = tuple(self._sink.matches)
            self._sink.matches.clear()

        return Evaluation(matches=matches, not_handled=not_handled, observed=observed)

    def close(self) -> None:
        """Free the engine's native ruleset, so later evaluations raise EngineError."""
        with self._lock:
            self._closed = True
            self._finalizer()

    def _assert_facts(self, sid: str, facts: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        not_handled = 0
        observed = 0
        for fact in facts:
            try:
                self._ruleset.assert_fact({**fact, "sid": sid})
            except MessageNotHandledException:
                not_handled += 1
            except MessageObservedException:
                observed += 1
                logger.debug("rules engine skipped a repeated fact id=%s", fact.get("id"))
            except durable_rules_engine.error as error:
                raise EngineError(f"rules engine rejected fact id={fact.get('id')}: {error}") from None
        return not_handled, observed

    def _run_actions(self, state: int) -> None:
        failures: list[BaseException] = []

        def complete(error: BaseException | None, _state: object) -> None:
            if error is not None:
                failures.append(error)

        self._ruleset.do_actions(state, complete)
        if failures:
            raise EngineError(f"rules engine actions failed: {failures[0]}") from failures[0]


class _MatchSink:
    """The list that rule actions append to during one evaluation."""

    def __init__(self, aliases: Mapping[str, tuple[str, ...]]) -> None:
        self.aliases = aliases
        self.matches: list[EngineMatch] = []

    def action_for(self, rule_key: str) -> Any:
        if rule_key == SESSION_RULE:
            return _ignore

        aliases = self.aliases[rule_key]
        matches = self.matches

        def record(closure: Any) -> None:
            facts = {alias: dict(getattr(closure, alias).items()) for alias in aliases}
            matches.append(EngineMatch(rule_key=rule_key, facts=facts))

        return record


def check_definition(definition: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Compile each rule of `definition` on its own and return the error of each rule that fails."""
    failures: dict[str, str] = {}
    for key, rule in definition.items():
        try:
            ruleset = _create_ruleset({key: rule}, lambda _key: _ignore)
        except durable_rules_engine.error as error:
            failures[key] = str(error)
            continue
        _delete_ruleset(ruleset)
    return failures


def _create_ruleset(definition: Mapping[str, Mapping[str, Any]], action_for: Any) -> Ruleset:
    rules: dict[str, dict[str, Any]] = {
        SESSION_RULE: {"all": [{"m": {"k": SESSION_RULE}}], "run": action_for(SESSION_RULE)}
    }
    for key, rule in definition.items():
        if key == SESSION_RULE:
            raise EngineError(f"rule key {SESSION_RULE!r} is reserved")
        rules[key] = {**rule, "run": action_for(key)}
    # Ruleset removes "run" from the dictionaries it receives, so it gets copies.
    return Ruleset(f"scoring-{uuid.uuid4().hex}", None, rules)


def _delete_ruleset(ruleset: Ruleset) -> None:
    # The Python wrapper has no way to free its native ruleset, so this reads its handle.
    handle = getattr(ruleset, "_handle", None)
    if handle is None:
        return
    try:
        durable_rules_engine.delete_ruleset(handle)
    except durable_rules_engine.error:
        logger.warning("could not free a durable_rules ruleset, handle=%s", handle)


def _aliases_of(rule: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(next(iter(step)) for step in rule["all"])


def _ignore(_closure: Any) -> None:
    return None
