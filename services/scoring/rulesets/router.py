"""Internal routes for score models: rule-set versions, rescoring, simulation and calibration."""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Request, Response
from fastapi.responses import JSONResponse
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.kit.app import get_session
from services.kit.pagination import CursorQuery, LimitQuery, decode_cursor, decode_int_cursor, encode_cursor
from services.kit.problems import Conflict, invalid
from services.scoring.analysis.calibration import calibrate_model
from services.scoring.analysis.simulate import simulate
from services.scoring.history.models import ContactFacts
from services.scoring.jobs.router import job_out
from services.scoring.jobs.service import RESCORE, count, enqueue, new_job, open_job
from services.scoring.rulesets.models import RuleSetVersion, ScoreModel
from services.scoring.rulesets.service import archive_model, get_model, get_version, list_models, list_versions, put_model
from services.scoring.schemas import (
    NAME_PATTERN,
    CalibrationIn,
    CalibrationOut,
    JobOut,
    ModelDetail,
    ModelOut,
    ModelPage,
    ModelSaved,
    SimulationOut,
    VersionDetail,
    VersionOut,
    VersionPage,
)

router = APIRouter(prefix="/scoring/models", tags=["score models"])

Session = Annotated[AsyncSession, Depends(get_session)]
ModelName = Annotated[str, Path(pattern=NAME_PATTERN, description="letters, digits, _ . and -, at most 64")]
Document = Annotated[dict[str, Any], Body(description="a rule set: mql_threshold, decay, rules, and model options")]


def model_out(model: ScoreModel) -> ModelOut:
    return ModelOut.model_validate(model, from_attributes=True)


def model_detail(model: ScoreModel, version: RuleSetVersion) -> ModelDetail:
    return ModelDetail(**model_out(model).model_dump(), rule_set=version.document)


@router.get("", response_model=ModelPage)
async def read_models(session: Session, limit: LimitQuery = 50, cursor: CursorQuery = None) -> ModelPage:
    """List score models by name."""
    after = str(decode_cursor(cursor, arity=1)[0]) if cursor else None
    models = await list_models(session, after=after, limit=limit + 1)
    page = models[:limit]
    next_cursor = encode_cursor(page[-1].name) if len(models) > limit else None
    return ModelPage(items=[model_out(model) for model in page], next_cursor=next_cursor)


@router.get("/{model}", response_model=ModelDetail)
async def read_model(model: ModelName, session: Session) -> ModelDetail:
    """Return a model with its active rule set."""
    stored = await get_model(session, model)
    return model_detail(stored, await get_version(session, model, stored.active_version))


@router.put("/{model}", response_model=ModelSaved, responses={201: {"model": ModelSaved}})
async def save_model(model: ModelName, body: Document, session: Session) -> JSONResponse:
    """Store a rule set as the model's new active version (201), or change nothing if it is the same (200).

    An invalid rule set is a 422 whose `errors` name the rule and the field of each problem.
    Existing scores stay as they are until the model is rescored.
    """
    result = await put_model(session, model, body)
    saved = ModelSaved(**model_detail(result.model, result.version).model_dump(), version_created=result.version_created)
    return JSONResponse(saved.model_dump(mode="json"), status_code=201 if result.version_created else 200)


@router.delete("/{model}", status_code=204)
async def delete_model(model: ModelName, session: Session) -> Response:
    """Archive a model: it scores no new events; its versions, scores and ledger stay readable."""
    await archive_model(session, model)
    return Response(status_code=204)


@router.get("/{model}/versions", response_model=VersionPage)
async def read_versions(model: ModelName, session: Session, limit: LimitQuery = 50, cursor: CursorQuery = None) -> VersionPage:
    """List a model's rule-set versions, oldest first."""
    stored = await get_model(session, model)
    after = _int_cursor(cursor)
    versions = await list_versions(session, model, after=after, limit=limit + 1)
    page = versions[:limit]
    items = [_version_out(version, stored) for version in page]
    return VersionPage(items=items, next_cursor=encode_cursor(page[-1].version) if len(versions) > limit else None)


@router.get("/{model}/versions/{version}", response_model=VersionDetail)
async def read_version(model: ModelName, version: int, session: Session) -> VersionDetail:
    """Return one rule-set version of a model."""
    stored = await get_model(session, model)
    found = await get_version(session, model, version)
    return VersionDetail(**_version_out(found, stored).model_dump(), rule_set=found.document)


@router.post("/{model}/rescore", status_code=202, response_model=JobOut)
async def rescore(model: ModelName, request: Request, session: Session) -> JobOut:
    """Recompute every contact's score from the stored history with the active version, as a job.

    Asking again while the same rescore is queued or running returns that job.
    """
    stored = await get_model(session, model)
    if not stored.active:
        raise Conflict(f"score model {model!r} is archived; save a rule set to activate it before rescoring")
    job = await open_job(session, RESCORE, model, version=stored.active_version)
    if job is None:
        total = await count(session, select(ContactFacts.contact_id))
        job = new_job(RESCORE, model, version=stored.active_version, total=total)
        session.add(job)
        await session.commit()
        await enqueue(request.app.state.redis, request.app.state.settings.namespace, job)
    return job_out(job)


@router.post("/{model}/simulate", response_model=SimulationOut)
async def simulate_rule_set(model: ModelName, body: Document, request: Request, session: Session) -> SimulationOut:
    """Score the stored history with a candidate rule set, writing nothing: distribution and who would cross."""
    document = dict(body)
    sample_size = document.pop("sample_size", 20)
    if isinstance(sample_size, bool) or not isinstance(sample_size, int) or not 0 <= sample_size <= 500:
        raise invalid("sample_size", "must be a whole number from 0 to 500")
    settings = request.app.state.settings
    return await simulate(session, model, document, sample_size=sample_size, max_contacts=settings.analysis_max_contacts)


@router.post("/{model}/calibration", response_model=CalibrationOut)
async def calibration(model: ModelName, body: CalibrationIn, request: Request, session: Session) -> CalibrationOut:
    """Measure the model against an outcome: ROC AUC, conversion per score decile, best threshold."""
    settings = request.app.state.settings
    return await calibrate_model(session, model, body, max_contacts=settings.analysis_max_contacts)


def _version_out(version: RuleSetVersion, model: ScoreModel) -> VersionOut:
    return VersionOut(
        model=version.model,
        version=version.version,
        mql_threshold=version.mql_threshold,
        active=model.active and version.version == model.active_version,
        created_at=version.created_at,
    )


def _int_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    return decode_int_cursor(cursor)
