"""Forwarding a public request to the service that owns it, and its answer back unchanged."""

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from services.kit.http import ServiceClient
from services.kit.problems import PROBLEM_MEDIA_TYPE

_PASSED_HEADERS = ("retry-after", "location")


def client_for(request: Request, service: str) -> ServiceClient:
    return request.app.state.clients[service]  # type: ignore[no-any-return]


async def forward(
    request: Request,
    service: str,
    method: str,
    path: str,
    *,
    json: Any = None,
    params: dict[str, Any] | None = None,
) -> Response:
    """Send the call to `service` and return its status and body as the gateway's answer."""
    clean_params = {key: value for key, value in (params or {}).items() if value is not None}
    upstream = await client_for(request, service).send(method, path, json=json, params=clean_params)
    headers = {name: value for name, value in upstream.headers.items() if name.lower() in _PASSED_HEADERS}
    if not upstream.content:
        return Response(status_code=upstream.status_code, headers=headers)
    media_type = PROBLEM_MEDIA_TYPE if upstream.status_code >= 400 else "application/json"
    return JSONResponse(upstream.json(), status_code=upstream.status_code, headers=headers, media_type=media_type)
