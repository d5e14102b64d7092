"""Internal route for reading a scoring job's progress."""

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit.app import get_session
from services.scoring.jobs.models import ScoringJob
from services.scoring.jobs.service import get_job
from services.scoring.schemas import JobOut

router = APIRouter(prefix="/scoring/jobs", tags=["scoring jobs"])

Session = Annotated[AsyncSession, Depends(get_session)]


def job_out(job: ScoringJob) -> JobOut:
    if job.state == "done":
        progress = 1.0
    elif job.total:
        progress = job.done / job.total
    else:
        progress = 0.0
    return JobOut(
        id=job.id,
        kind=job.kind,  # type: ignore[arg-type]
        model=job.model,
        version=job.version,
        threshold=job.threshold,
        state=job.state,  # type: ignore[arg-type]
        total=job.total,
        done=job.done,
        progress=round(min(1.0, progress), 4),
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


@router.get("/{job_id}", response_model=JobOut)
async def read_job(job_id: str, session: Session) -> JobOut:
    """Return a job's state and progress: total contacts, how many are done."""
    return job_out(await get_job(session, job_id))
