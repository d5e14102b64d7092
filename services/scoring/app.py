"""The scoring service's FastAPI application."""

from fastapi import FastAPI

from services.kit.app import create_service_app
from services.kit.outbox import Outbox
from services.scoring.db import OutboxMessage
from services.scoring.jobs.router import router as jobs_router
from services.scoring.reports.router import router as reports_router
from services.scoring.rulesets.router import router as models_router
from services.scoring.scores.router import router as scores_router
from services.scoring.settings import ScoringSettings
from services.scoring.thresholds.router import router as thresholds_router


def create_app(settings: ScoringSettings | None = None) -> FastAPI:
    settings = settings or ScoringSettings()
    outbox = Outbox(OutboxMessage, service="scoring", namespace=settings.namespace)
    routers = [scores_router, reports_router, models_router, thresholds_router, jobs_router]
    return create_service_app(settings, title="nurture scoring", routers=routers, outbox=outbox)
