"""Prometheus metrics: request counts and latencies per service, served at `/metrics`."""

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

REQUESTS = Counter(
    "nurture_http_requests_total", "HTTP requests handled", ["service", "method", "route", "status"]
)
LATENCY = Histogram(
    "nurture_http_request_duration_seconds", "HTTP request latency in seconds", ["service", "method", "route"]
)
JOBS = Counter("nurture_jobs_total", "Queue jobs run", ["service", "function", "outcome"])


def install_metrics(app: FastAPI, service: str) -> None:
    """Count and time every request by its route template, and expose `/metrics`."""

    @app.middleware("http")
    async def _measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        LATENCY.labels(service, request.method, template).observe(time.perf_counter() - started)
        REQUESTS.labels(service, request.method, template, str(response.status_code)).inc()
        return response

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
