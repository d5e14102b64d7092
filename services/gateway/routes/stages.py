"""Public routes for lifecycle stage definitions, transitions and history."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["stages"])
