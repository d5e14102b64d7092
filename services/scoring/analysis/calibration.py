"""Calibrating a model against outcomes stored by the scoring service: stages reached and attributes."""

from collections.abc import Mapping
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.scoring.history.models import ContactFacts
from services.scoring.history.service import facts_of, reached_stage
from services.scoring.rules import calibrate
from services.scoring.rulesets.service import get_model, model_as_active
from services.scoring.schemas import CalibrationIn, CalibrationOut, DecileOut, OutcomeAttribute, ThresholdChoiceOut
from services.scoring.scores.service import current_score, load_books

CHUNK = 500


async def calibrate_model(session: AsyncSession, name: str, body: CalibrationIn, *, max_contacts: int) -> CalibrationOut:
    """Measure how well the model's current scores separate contacts with the outcome from the rest.

    The sample is every contact the scoring service stores (at most `max_contacts`), with its score
    under the model computed now, decay included. A contact that never gained or lost a point
    counts with a score of 0, because leaving it out would hide the leads the rules miss.
    """
    model = await model_as_active(session, await get_model(session, name))
    now = clock.now()
    samples: list[tuple[float, bool]] = []
    after: str | None = None
    while len(samples) < max_contacts:
        query = select(ContactFacts.contact_id).order_by(ContactFacts.contact_id)
        if after is not None:
            query = query.where(ContactFacts.contact_id > after)
        ids = list((await session.exec(query.limit(min(CHUNK, max_contacts - len(samples))))).all())
        if not ids:
            break

        books = await load_books(session, ids, [name])
        facts = await facts_of(session, ids)
        for contact_id in ids:
            score = current_score(model, books[contact_id], now).total
            samples.append((score, _converted(facts.get(contact_id), body.outcome)))
        after = ids[-1]
    truncated = after is not None and len(samples) >= max_contacts and await _more_after(session, after)

    report = calibrate(samples)
    return CalibrationOut(
        model=name,
        outcome=_describe(body.outcome),
        at=now,
        samples=report.samples,
        conversions=report.conversions,
        truncated=truncated,
        auc=report.auc,
        deciles=[DecileOut.model_validate(decile, from_attributes=True) for decile in report.deciles],
        best_threshold=(
            ThresholdChoiceOut.model_validate(report.best_threshold, from_attributes=True)
            if report.best_threshold is not None
            else None
        ),
        current_threshold=threshold_quality(samples, model.mql_threshold),
    )


def threshold_quality(samples: list[tuple[float, bool]], threshold: float) -> ThresholdChoiceOut | None:
    """Return sensitivity, specificity and Youden's J of `score >= threshold`, or None without both outcomes."""
    positives = sum(1 for _score, outcome in samples if outcome)
    negatives = len(samples) - positives
    if positives == 0 or negatives == 0:
        return None
    true_positives = sum(1 for score, outcome in samples if outcome and score >= threshold)
    false_positives = sum(1 for score, outcome in samples if not outcome and score >= threshold)
    sensitivity = true_positives / positives
    specificity = (negatives - false_positives) / negatives
    return ThresholdChoiceOut(
        threshold=threshold, sensitivity=sensitivity, specificity=specificity, youden_j=sensitivity + specificity - 1
    )


def _converted(facts: ContactFacts | None, outcome: str | OutcomeAttribute) -> bool:
    if facts is None:
        return False
    if isinstance(outcome, str):
        return reached_stage(facts, outcome)
    value = _lookup(facts.facts.get("attributes") or {}, outcome.attribute)
    return _same(value, outcome.equals)


def _lookup(document: Mapping[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _same(value: Any, expected: Any) -> bool:
    # True == 1 in Python, but a yes/no attribute and a number are different outcomes.
    if isinstance(value, bool) or isinstance(expected, bool):
        return isinstance(value, bool) and isinstance(expected, bool) and value == expected
    return bool(value == expected)


def _describe(outcome: str | OutcomeAttribute) -> str:
    if isinstance(outcome, str):
        return outcome
    return f"attributes.{outcome.attribute} == {outcome.equals!r}"


async def _more_after(session: AsyncSession, after: str) -> bool:
    query = select(ContactFacts.contact_id).where(ContactFacts.contact_id > after)
    return (await session.exec(query.limit(1))).first() is not None
