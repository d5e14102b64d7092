"""Errors raised by the scoring rules library.

Each error names what was wrong, so the service can turn it into a problem-details response
(422 for a rule set or an input document) instead of a 500.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RuleError:
    """One problem in a rule set: the rule it belongs to, the field inside it and what is wrong.

    `rule` is the rule's `name`, or `rules[<index>]` when the rule has no usable name, or None
    for a field of the rule set itself (such as `mql_threshold`). `field` is a path inside the
    rule, such as `points` or `where.all[1].value`.
    """

    rule: str | None
    field: str
    message: str

    def as_dict(self) -> dict[str, str | None]:
        return {"rule": self.rule, "field": self.field, "message": self.message}


class RuleSetInvalid(ValueError):
    """A rule set that failed validation or compilation, with every problem found in `errors`."""

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors: tuple[RuleError, ...] = tuple(errors)
        summary = "; ".join(_describe(error) for error in self.errors[:5])
        more = len(self.errors) - 5
        if more > 0:
            summary += f"; and {more} more"
        super().__init__(f"invalid rule set: {summary}")

    def as_dicts(self) -> list[dict[str, str | None]]:
        return [error.as_dict() for error in self.errors]


class ScoringInputError(ValueError):
    """A contact, event, ledger entry or sample passed to the library is malformed.

    `field` is a path into the caller's input, such as `event.occurred_at` or
    `recent_events[3].id`.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class EngineError(RuntimeError):
    """The rule engine failed on input that validation had accepted: a bug, not bad input."""


def _describe(error: RuleError) -> str:
    where = error.field if error.rule is None else f"rule {error.rule!r}, field {error.field!r}"
    return f"{where}: {error.message}"
