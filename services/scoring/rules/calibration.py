"""Calibration of a score model against outcomes: how well scores separate converters.

Input is a list of (score, outcome) pairs, where the outcome is True when the lead converted
(for instance became an SQL). It is pure Python, because the samples of one model fit in memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from services.scoring.rules.errors import ScoringInputError

DECILES = 10


@dataclass(frozen=True, slots=True)
class DecileStat:
    """Conversions among the samples of one score decile. Decile 1 contains the lowest scores.

    Tied scores share a decile, so a decile can be empty, and then its rate and bounds are None.
    """

    decile: int
    count: int
    conversions: int
    conversion_rate: float | None
    min_score: float | None
    max_score: float | None


@dataclass(frozen=True, slots=True)
class ThresholdChoice:
    """The threshold `score >= threshold` with the highest Youden's J = sensitivity + specificity - 1."""

    threshold: float
    sensitivity: float
    specificity: float
    youden_j: float


@dataclass(frozen=True, slots=True)
class Calibration:
    samples: int
    conversions: int
    auc: float | None
    deciles: tuple[DecileStat, ...]
    best_threshold: ThresholdChoice | None


def calibrate(samples: Iterable[tuple[float, bool]]) -> Calibration:
    """Return ROC AUC, conversion per decile and the Youden threshold for `samples`."""
    checked = _check_samples(samples)
    return Calibration(
        samples=len(checked),
        conversions=sum(1 for _score, outcome in checked if outcome),
        auc=roc_auc(checked),
        deciles=tuple(decile_conversion(checked)),
        best_threshold=youden_threshold(checked),
    )


def roc_auc(samples: Iterable[tuple[float, bool]]) -> float | None:
    """Return the area under the ROC curve, or None when only one outcome occurs.

    Computed as the Mann-Whitney U statistic over average ranks, so a tie between a converter and
    a non-converter counts one half.
    """
    checked = _check_samples(samples)
    positives = sum(1 for _score, outcome in checked if outcome)
    negatives = len(checked) - positives
    if positives == 0 or negatives == 0:
        return None

    ranks = _average_ranks([score for score, _outcome in checked])
    positive_rank_sum = math.fsum(rank for rank, (_s, won) in zip(ranks, checked, strict=True) if won)
    u_statistic = positive_rank_sum - positives * (positives + 1) / 2
    return u_statistic / (positives * negatives)


def decile_conversion(samples: Iterable[tuple[float, bool]]) -> list[DecileStat]:
    """Return ten deciles by score rank with their conversion rates.

    A sample's decile is floor(10 * (average rank - 1) / n) + 1, so with n = 20 each decile contains
    two samples and tied scores always land in the same decile.
    """
    checked = _check_samples(samples)
    ranks = _average_ranks([score for score, _outcome in checked])
    buckets: list[list[tuple[float, bool]]] = [[] for _ in range(DECILES)]
    for rank, sample in zip(ranks, checked, strict=True):
        index = min(DECILES - 1, math.floor(DECILES * (rank - 1) / len(checked)))
        buckets[index].append(sample)
    return [_decile_stat(number, bucket) for number, bucket in enumerate(buckets, start=1)]


def youden_threshold(samples: Iterable[tuple[float, bool]]) -> ThresholdChoice | None:
    """Return the observed score that best separates outcomes, or None when one outcome is missing.

    Each distinct score is a candidate threshold, predicting conversion for `score >= threshold`.
    When several share the highest J, the highest threshold wins: it passes fewer leads to sales
    for the same separation.
    """
    checked = _check_samples(samples)
    positives = sum(1 for _score, outcome in checked if outcome)
    negatives = len(checked) - positives
    if positives == 0 or negatives == 0:
        return None

    best: tuple[int, float, int, int] | None = None
    true_positives = false_positives = 0
    ordered = sorted(checked, key=lambda sample: sample[0], reverse=True)
    for index, (score, outcome) in enumerate(ordered):
        true_positives += 1 if outcome else 0
        false_positives += 0 if outcome else 1
        if index + 1 < len(ordered) and ordered[index + 1][0] == score:
            continue
        # J * positives * negatives, an integer, so equal J values compare equal.
        scaled_j = true_positives * negatives - false_positives * positives
        if best is None or scaled_j > best[0]:
            best = (scaled_j, score, true_positives, false_positives)

    assert best is not None
    scaled_j, threshold, true_positives, false_positives = best
    return ThresholdChoice(
        threshold=threshold,
        sensitivity=true_positives / positives,
        specificity=(negatives - false_positives) / negatives,
        youden_j=scaled_j / (positives * negatives),
    )


def _decile_stat(number: int, bucket: list[tuple[float, bool]]) -> DecileStat:
    conversions = sum(1 for _score, outcome in bucket if outcome)
    scores = [score for score, _outcome in bucket]
    return DecileStat(
        decile=number,
        count=len(bucket),
        conversions=conversions,
        conversion_rate=conversions / len(bucket) if bucket else None,
        min_score=min(scores, default=None),
        max_score=max(scores, default=None),
    )


def _average_ranks(scores: list[float]) -> list[float]:
    order = sorted(range(len(scores)), key=lambda index: scores[index])
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        average = (start + end) / 2 + 1
        for position in range(start, end + 1):
            ranks[order[position]] = average
        start = end + 1
    return ranks


def _check_samples(samples: Iterable[tuple[float, bool]]) -> list[tuple[float, bool]]:
    checked = []
    for index, sample in enumerate(samples):
        try:
            score, outcome = sample
        except (TypeError, ValueError):
            raise ScoringInputError(f"samples[{index}]", "must be a (score, outcome) pair") from None
        if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
            raise ScoringInputError(f"samples[{index}].score", f"must be a finite number, got {score!r}")
        if outcome not in (True, False):
            raise ScoringInputError(f"samples[{index}].outcome", f"must be true or false, got {outcome!r}")
        checked.append((float(score), bool(outcome)))
    return checked
