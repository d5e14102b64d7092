"""Public routes for score models, rule sets, rescoring, simulation and calibration."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["scoring"])
