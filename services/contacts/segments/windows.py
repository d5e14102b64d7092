"""The dependencies of a segment filter: its rolling time windows and the data that can change membership.

A contact can enter or leave a segment without any new data when a rolling window moves past one of
its events. The service reads `time_windows` to plan re-evaluation: for a contact, the next such
moment is the `occurred_at` of its oldest matching event inside the window plus the window length.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from services.contacts.segments.filter import AttributeCondition, BehaviourCondition, FilterNode, walk


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A rolling window of one behaviour condition: events of type `event` in the last `days` days."""

    path: str
    event: str
    days: int

    @property
    def length(self) -> dt.timedelta:
        return dt.timedelta(days=self.days)

    def starts_at(self, now: dt.datetime) -> dt.datetime:
        """Return the earliest `occurred_at` inside the window at `now` (an aware datetime)."""
        return now - self.length


@dataclass(frozen=True, slots=True)
class FilterDependencies:
    """The fields and event types whose changes can change the members of a segment."""

    fields: frozenset[str]
    event_types: frozenset[str]


def time_windows(node: FilterNode, *, root: str = "filter") -> tuple[TimeWindow, ...]:
    """Return the rolling windows (`within_days`) of every behaviour condition, in document order.

    Fixed windows (`between`) are not listed because they do not move with time.
    """
    return tuple(
        TimeWindow(path, child.event, child.within_days)
        for path, child in walk(node, root)
        if isinstance(child, BehaviourCondition) and child.within_days is not None
    )


def filter_dependencies(node: FilterNode) -> FilterDependencies:
    """Return the field paths and event types that `node` reads."""
    nodes = [child for _, child in walk(node)]
    fields = frozenset(child.field for child in nodes if isinstance(child, AttributeCondition))
    event_types = frozenset(child.event for child in nodes if isinstance(child, BehaviourCondition))
    return FilterDependencies(fields, event_types)
