"""Internal route of the score distribution; the gateway serves it as /v1/reports/score-distribution.

It reads the stored score of each contact (`contact_score.total`, as of the contact's last score
change), so engagement decay since that change is not applied. Replaying every contact's history,
as a simulation does, would be exact but far too slow for a dashboard.
"""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import case, func, literal
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit import clock
from services.kit.app import get_session
from services.kit.problems import NotFound
from services.scoring.rulesets.models import ScoreModel
from services.scoring.scores.models import ContactScore

router = APIRouter(prefix="/reports", tags=["reports"])

Session = Annotated[AsyncSession, Depends(get_session)]
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ScoreBin(BaseModel):
    low: float
    high: float = Field(description="Exclusive, except in the last bin, which includes the maximum")
    count: int


class ScoreDistribution(BaseModel):
    model: str
    generated_at: datetime
    count: int = Field(description="Contacts with a stored score under the model")
    min: float | None
    max: float | None
    mean: float | None
    bins: list[ScoreBin] = Field(description="Equal-width bins from min to max; one bin when all scores are equal")


@router.get("/score-distribution", response_model=ScoreDistribution)
async def score_distribution(
    session: Session,
    model: Annotated[str, Query(pattern=MODEL_PATTERN, description="Score model name")] = "default",
    bins: Annotated[int, Query(ge=1, le=50, description="Number of histogram bins")] = 10,
) -> ScoreDistribution:
    """Count the contacts' stored scores under one model into equal-width bins, in SQL."""
    summary = select(
        func.count(), func.min(col(ContactScore.total)), func.max(col(ContactScore.total)), func.avg(col(ContactScore.total))
    ).where(ContactScore.model == model)
    count, low, high, mean = (await session.exec(summary)).one()
    generated_at = clock.now()
    if not count:
        if await session.get(ScoreModel, model) is None:
            raise NotFound(f"no score model is named {model!r}")
        return ScoreDistribution(model=model, generated_at=generated_at, count=0, min=None, max=None, mean=None, bins=[])

    low, high = float(low), float(high)
    edges = _edges(low, high, bins)
    counts = await _bin_counts(session, model, edges) if len(edges) > 2 else {0: int(count)}
    return ScoreDistribution(
        model=model,
        generated_at=generated_at,
        count=int(count),
        min=low,
        max=high,
        mean=round(float(mean), 2),
        bins=[ScoreBin(low=round(edges[index], 2), high=round(edges[index + 1], 2), count=counts.get(index, 0)) for index in range(len(edges) - 1)],
    )


def _edges(low: float, high: float, bins: int) -> list[float]:
    if low == high:
        return [low, high]
    width = (high - low) / bins
    return [low + index * width for index in range(bins)] + [high]


async def _bin_counts(session: AsyncSession, model: str, edges: list[float]) -> dict[int, int]:
    # A bin counts the scores from its low edge up to, not including, the next edge. The last bin
    # also counts the maximum.
    total = col(ContactScore.total)
    inner_edges = edges[1:-1]
    index = case(*((total < literal(edge), position) for position, edge in enumerate(inner_edges)), else_=len(inner_edges))
    query = select(index.label("bin"), func.count()).where(ContactScore.model == model).group_by(index)
    return {int(position): int(number) for position, number in (await session.exec(query)).all()}
