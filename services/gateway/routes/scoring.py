"""Public routes for score models, rule sets, rescoring, simulation, calibration and thresholds.

A contact's score itself is served by `GET /v1/contacts/{id}/score` in the contacts routes.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from services.gateway.keys.auth import require_scope
from services.gateway.routes.forward import forward
from services.gateway.routes.json_body import StrictJsonRoute
from services.kit.pagination import CursorQuery, LimitQuery
from services.scoring.schemas import (
    NAME_PATTERN,
    CalibrationIn,
    CalibrationOut,
    FiringPage,
    JobOut,
    ModelDetail,
    ModelPage,
    ModelSaved,
    RuleSetIn,
    SimulateIn,
    SimulationOut,
    ThresholdIn,
    ThresholdOut,
    ThresholdPage,
    ThresholdSaved,
    VersionDetail,
    VersionPage,
)

router = APIRouter(prefix="/v1/scoring", tags=["scoring"], route_class=StrictJsonRoute)

ReadScoring = Annotated[object, Depends(require_scope("scoring:read"))]
WriteScoring = Annotated[object, Depends(require_scope("scoring:write"))]
ModelName = Annotated[str, Path(pattern=NAME_PATTERN, description="letters, digits, _ . and -, at most 64")]
ThresholdName = Annotated[str, Path(pattern=NAME_PATTERN, description="letters, digits, _ . and -, at most 64")]


@router.get("/models", response_model=ModelPage)
async def list_models(request: Request, _: ReadScoring, limit: LimitQuery = 50, cursor: CursorQuery = None) -> Response:
    """List score models by name."""
    return await forward(request, "scoring", "GET", "/scoring/models", params={"limit": limit, "cursor": cursor})


@router.get("/models/{model}", response_model=ModelDetail)
async def read_model(model: ModelName, request: Request, _: ReadScoring) -> Response:
    """Read a model with its active rule set."""
    return await forward(request, "scoring", "GET", f"/scoring/models/{model}")


@router.put("/models/{model}", response_model=ModelSaved, responses={201: {"model": ModelSaved}})
async def save_model(model: ModelName, body: RuleSetIn, request: Request, _: WriteScoring) -> Response:
    """Store a rule set as the model's new active version (201), or change nothing when it is the same (200).

    An invalid rule set is a 422 whose `errors` name the rule and the field of each problem.
    Existing scores stay as they are until the model is rescored.
    """
    return await forward(request, "scoring", "PUT", f"/scoring/models/{model}", json=body.model_dump(exclude_unset=True))


@router.delete("/models/{model}", status_code=204)
async def archive_model(model: ModelName, request: Request, _: WriteScoring) -> Response:
    """Archive a model: it scores no new events; its versions, scores and ledger stay readable."""
    return await forward(request, "scoring", "DELETE", f"/scoring/models/{model}")


@router.get("/models/{model}/versions", response_model=VersionPage)
async def list_versions(
    model: ModelName, request: Request, _: ReadScoring, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> Response:
    """List a model's rule-set versions, oldest first."""
    params = {"limit": limit, "cursor": cursor}
    return await forward(request, "scoring", "GET", f"/scoring/models/{model}/versions", params=params)


@router.get("/models/{model}/versions/{version}", response_model=VersionDetail)
async def read_version(model: ModelName, version: int, request: Request, _: ReadScoring) -> Response:
    """Read one rule-set version of a model."""
    return await forward(request, "scoring", "GET", f"/scoring/models/{model}/versions/{version}")


@router.post("/models/{model}/rescore", status_code=202, response_model=JobOut)
async def rescore(model: ModelName, request: Request, _: WriteScoring) -> Response:
    """Recompute every contact's score from the stored history with the active version, as a job.

    Read its progress at `GET /v1/scoring/jobs/{id}`.
    """
    return await forward(request, "scoring", "POST", f"/scoring/models/{model}/rescore")


@router.post("/models/{model}/simulate", response_model=SimulationOut)
async def simulate(model: ModelName, body: SimulateIn, request: Request, _: ReadScoring) -> Response:
    """Score the stored history with a candidate rule set, changing nothing: distribution and who would cross."""
    path = f"/scoring/models/{model}/simulate"
    return await forward(request, "scoring", "POST", path, json=body.model_dump(exclude_unset=True))


@router.post("/models/{model}/calibration", response_model=CalibrationOut)
async def calibrate(model: ModelName, body: CalibrationIn, request: Request, _: ReadScoring) -> Response:
    """Measure the model against an outcome: ROC AUC, conversion per score decile and the best threshold."""
    path = f"/scoring/models/{model}/calibration"
    return await forward(request, "scoring", "POST", path, json=body.model_dump(mode="json"))


@router.get("/jobs/{job_id}", response_model=JobOut)
async def read_job(job_id: Annotated[str, Path(max_length=32)], request: Request, _: ReadScoring) -> Response:
    """Read a rescore or backfill job: state, total contacts and how many are done."""
    return await forward(request, "scoring", "GET", f"/scoring/jobs/{job_id}")


@router.get("/thresholds", response_model=ThresholdPage)
async def list_thresholds(request: Request, _: ReadScoring, limit: LimitQuery = 50, cursor: CursorQuery = None) -> Response:
    """List score thresholds by name."""
    return await forward(request, "scoring", "GET", "/scoring/thresholds", params={"limit": limit, "cursor": cursor})


@router.get("/thresholds/{name}", response_model=ThresholdOut)
async def read_threshold(name: ThresholdName, request: Request, _: ReadScoring) -> Response:
    """Read a threshold's definition and how often it has fired."""
    return await forward(request, "scoring", "GET", f"/scoring/thresholds/{name}")


@router.put("/thresholds/{name}", response_model=ThresholdSaved, responses={201: {"model": ThresholdSaved}})
async def save_threshold(name: ThresholdName, body: ThresholdIn, request: Request, _: WriteScoring) -> Response:
    """Create (201) or change (200) a `score >= min_score` trigger; saving it unchanged does nothing.

    It fires when a contact's score crosses it upwards, once per contact unless `rearm` is true.
    With `apply_to_existing`, a save that changes it starts a backfill job that fires once for
    contacts already at or above it.
    """
    return await forward(request, "scoring", "PUT", f"/scoring/thresholds/{name}", json=body.model_dump(mode="json"))


@router.delete("/thresholds/{name}", status_code=204)
async def delete_threshold(name: ThresholdName, request: Request, _: WriteScoring) -> Response:
    """Delete a threshold with its per-contact state and firings."""
    return await forward(request, "scoring", "DELETE", f"/scoring/thresholds/{name}")


@router.get("/thresholds/{name}/firings", response_model=FiringPage)
async def list_firings(
    name: ThresholdName,
    request: Request,
    _: ReadScoring,
    contact_id: Annotated[str | None, Query(max_length=32)] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Response:
    """List the times the threshold fired, oldest first, optionally for one contact."""
    params = {"contact_id": contact_id, "limit": limit, "cursor": cursor}
    return await forward(request, "scoring", "GET", f"/scoring/thresholds/{name}/firings", params=params)
