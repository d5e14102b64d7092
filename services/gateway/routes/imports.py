"""Public routes for CSV imports of contacts."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["imports"])
