"""Public routes for segments and their members."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1", tags=["segments"])
