"""Public routes for drip sequences and enrolments."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["sequences"])
