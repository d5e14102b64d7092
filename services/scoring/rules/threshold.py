"""Edge-triggered score thresholds, such as the MQL threshold.

A threshold fires when a contact's score crosses it upwards, once per contact. Staying above it,
falling below it and climbing back do not fire again unless the threshold is re-armed. The caller
stores `fired` per contact and threshold and passes it back as `already_fired`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.scoring.rules.errors import ScoringInputError


@dataclass(frozen=True, slots=True)
class ThresholdCrossing:
    """What one score change means for one threshold.

    Attributes:
        fire: run the threshold's action (for the MQL threshold: ask to promote the lead).
        exited: the score fell from at or above the threshold to below it. The caller may record
            a `threshold_exited` event, but nothing is undone.
        fired: the value to store as `already_fired` from now on.
    """

    fire: bool
    exited: bool
    fired: bool


def cross_threshold(
    *,
    previous: float | None,
    new: float,
    threshold: float,
    already_fired: bool,
    rearm: bool = False,
) -> ThresholdCrossing:
    """Decide whether a score change from `previous` to `new` fires a `score >= threshold` trigger.

    Args:
        previous: the score before the change, or None when no earlier score is known, as when a
            threshold created with `apply_to_existing` is backfilled over existing contacts. A
            score at or above the threshold then counts as a crossing.
        new: the score after the change.
        threshold: the trigger fires at `score >= threshold`.
        already_fired: whether this threshold has fired for this contact before.
        rearm: fire again on every new upward crossing, after the score has dropped below.
    """
    _check_score("new", new)
    _check_score("threshold", threshold)
    if previous is not None:
        _check_score("previous", previous)

    is_above = new >= threshold
    was_above = previous is not None and previous >= threshold
    crossed_upwards = is_above and not was_above
    fire = crossed_upwards and (rearm or not already_fired)
    return ThresholdCrossing(
        fire=fire,
        exited=was_above and not is_above,
        fired=already_fired or fire,
    )


def _check_score(field: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScoringInputError(field, f"must be a finite number, got {value!r}")
