"""Email metrics, defined once for every report (per step, per sequence, per campaign).

Definitions, over the messages given:
- sent: messages accepted by the SMTP server or provider.
- bounces: sent messages that bounced and have no human open or click. An open proves delivery, so a
  bounce reported for an opened message is stale and ignored.
- delivered: sent minus bounces.
- total_opens: human open events; machine_opens: opens flagged as machine (provider flag, Apple Mail
  Privacy Protection, scanners), kept apart and never in a rate.
- unique_opens: delivered messages with a human open or a human click (a click proves an open when
  images were blocked, so click-to-open can never exceed 1).
- total_clicks, unique_clicks: human clicks, and delivered messages with at least one; bot_clicks apart.
- unsubscribes, complaints: messages that led to one.
- open_rate = unique_opens / delivered; click_rate = unique_clicks / delivered;
  click_to_open = unique_clicks / unique_opens; bounce_rate = bounces / sent;
  unsubscribe_rate = unsubscribes / delivered.
A rate is None when its denominator is zero, and always within [0, 1] otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class MessageEngagement:
    """Delivery outcome and counted engagement of one message."""

    message_id: str
    sent: bool = True
    bounced: bool = False
    human_opens: int = 0
    machine_opens: int = 0
    human_clicks: int = 0
    bot_clicks: int = 0
    unsubscribed: bool = False
    complained: bool = False
    step_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("human_opens", "machine_opens", "human_clicks", "bot_clicks"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative for message {self.message_id!r}")

    @property
    def delivered(self) -> bool:
        """Whether the message counts as delivered (see the module's definitions)."""
        return self.sent and (not self.bounced or self.human_opens > 0 or self.human_clicks > 0)


@dataclass(frozen=True)
class EmailMetrics:
    """Counts and rates for a set of messages; rates are None on a zero denominator."""

    sent: int
    delivered: int
    bounces: int
    total_opens: int
    unique_opens: int
    machine_opens: int
    total_clicks: int
    unique_clicks: int
    bot_clicks: int
    unsubscribes: int
    complaints: int
    open_rate: float | None
    click_rate: float | None
    click_to_open: float | None
    bounce_rate: float | None
    unsubscribe_rate: float | None


def rate(numerator: int, denominator: int) -> float | None:
    """Return numerator / denominator, None when the denominator is zero.

    Raises:
        ValueError: the numerator is negative or larger than the denominator, which would mean the
            counts were built with different definitions.
    """
    if denominator == 0:
        return None
    if not 0 <= numerator <= denominator:
        raise ValueError(f"rate numerator {numerator} is outside 0..{denominator}")
    return numerator / denominator


def compute_metrics(messages: Iterable[MessageEngagement]) -> EmailMetrics:
    """Compute the metrics of the module's definitions over `messages`."""
    sent = delivered = bounces = 0
    total_opens = unique_opens = machine_opens = 0
    total_clicks = unique_clicks = bot_clicks = 0
    unsubscribes = complaints = 0

    for message in messages:
        if not message.sent:
            continue
        sent += 1
        machine_opens += message.machine_opens
        bot_clicks += message.bot_clicks
        if not message.delivered:
            bounces += 1
            continue

        delivered += 1
        total_opens += message.human_opens
        total_clicks += message.human_clicks
        unique_opens += message.human_opens > 0 or message.human_clicks > 0
        unique_clicks += message.human_clicks > 0
        unsubscribes += message.unsubscribed
        complaints += message.complained

    return EmailMetrics(
        sent=sent,
        delivered=delivered,
        bounces=bounces,
        total_opens=total_opens,
        unique_opens=unique_opens,
        machine_opens=machine_opens,
        total_clicks=total_clicks,
        unique_clicks=unique_clicks,
        bot_clicks=bot_clicks,
        unsubscribes=unsubscribes,
        complaints=complaints,
        open_rate=rate(unique_opens, delivered),
        click_rate=rate(unique_clicks, delivered),
        click_to_open=rate(unique_clicks, unique_opens),
        bounce_rate=rate(bounces, sent),
        unsubscribe_rate=rate(unsubscribes, delivered),
    )


def compute_metrics_by(
    messages: Iterable[MessageEngagement], key: Callable[[MessageEngagement], K]
) -> dict[K, EmailMetrics]:
    """Compute metrics per group, e.g. per step with `key=lambda m: m.step_id`."""
    groups: dict[K, list[MessageEngagement]] = defaultdict(list)
    for message in messages:
        groups[key(message)].append(message)
    return {group: compute_metrics(items) for group, items in groups.items()}


COUNT_FIELDS = (
    "sent",
    "delivered",
    "bounces",
    "total_opens",
    "unique_opens",
    "machine_opens",
    "total_clicks",
    "unique_clicks",
    "bot_clicks",
    "unsubscribes",
    "complaints",
)


def metrics_from_counts(counts: dict[str, int]) -> EmailMetrics:
    """Build metrics from counts made with this module's definitions, computing the rates the same way.

    Used to add the counts kept for erased contacts to those computed from stored messages.
    """
    values = {name: int(counts.get(name, 0)) for name in COUNT_FIELDS}
    return EmailMetrics(
        **values,
        open_rate=rate(values["unique_opens"], values["delivered"]),
        click_rate=rate(values["unique_clicks"], values["delivered"]),
        click_to_open=rate(values["unique_clicks"], values["unique_opens"]),
        bounce_rate=rate(values["bounces"], values["sent"]),
        unsubscribe_rate=rate(values["unsubscribes"], values["delivered"]),
    )


def add_metrics(*parts: EmailMetrics) -> EmailMetrics:
    """Add the counts of several metric sets and compute the rates of the sum."""
    return metrics_from_counts({name: sum(getattr(part, name) for part in parts) for name in COUNT_FIELDS})
