"""Forwarding a public request to the service that owns it, and returning its response unchanged."""

from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from services.kit.http import ServiceClient
from services.kit.logging import get_logger
from services.kit.problems import PROBLEM_MEDIA_TYPE, Unavailable, invalid

log = get_logger(__name__)

_PASSED_HEADERS = ("retry-after", "location")
# Characters kept as they are in a path segment: RFC 3986 unreserved and sub-delimiters, ':' and
# '@'. A '%' is always encoded, because the server has decoded the caller's path once already: a
# parameter holding `%2F` would otherwise reach the service as a '/' and select another route.
_SEGMENT_SAFE = "-._~!$&'()*+,;=:@"


def client_for(request: Request, service: str) -> ServiceClient:
    return request.app.state.clients[service]  # type: ignore[no-any-return]


def internal_path(path: str) -> str:
    """Percent-encode each segment of `path`, which routes build from the caller's path parameters.

    A parameter could otherwise end the path (`?`, `#`), carry characters no URL may hold
    (controls, spaces), or be a dot segment that the HTTP client would resolve into another route.
    """
    segments = []
    for segment in path.split("/"):
        if segment in (".", ".."):
            segments.append(segment.replace(".", "%2E"))
        else:
            segments.append(quote(segment, safe=_SEGMENT_SAFE))
    return "/".join(segments)


def reject_nul_characters(request: Request, json: Any, params: dict[str, Any]) -> None:
    """Raise a 422 naming the first path parameter, query parameter or body field holding U+0000.

    PostgreSQL text cannot store the NUL character, so a service would fail on it with a database
    error. No stored value can contain it, so it is rejected here, before any service sees it.
    """
    for name, value in {**request.path_params, **params}.items():
        if isinstance(value, str) and "\x00" in value:
            raise invalid(name, "must not contain the NUL character (U+0000)")
    field = _nul_field(json, "")
    if field is not None:
        raise invalid(field or "body", "must not contain the NUL character (U+0000)")


def _nul_field(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return inner
            found = _nul_field(item, inner)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_field(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


async def forward(
    request: Request,
    service: str,
    method: str,
    path: str,
    *,
    json: Any = None,
    params: dict[str, Any] | None = None,
) -> Response:
    """Send the call to `service` and return its status and body as the gateway's response."""
    clean_params = {key: value for key, value in (params or {}).items() if value is not None}
    reject_nul_characters(request, json, clean_params)
    upstream = await client_for(request, service).send(method, internal_path(path), json=json, params=clean_params)
    headers = {name: value for name, value in upstream.headers.items() if name.lower() in _PASSED_HEADERS}
    if not upstream.content:
        return Response(status_code=upstream.status_code, headers=headers)

    try:
        body = upstream.json()
    except ValueError as error:
        log.error("upstream.invalid_json", service=service, path=path, status=upstream.status_code)
        raise Unavailable(f"the {service} service sent a response that is not JSON", service=service) from error
    media_type = PROBLEM_MEDIA_TYPE if upstream.status_code >= 400 else "application/json"
    body = public_problem(request, body, upstream.status_code)
    return JSONResponse(body, status_code=upstream.status_code, headers=headers, media_type=media_type)


def public_problem(request: Request, body: Any, status: int) -> Any:
    """Give a service's problem document the gateway's path as `instance`, the one the client called."""
    if status >= 400 and isinstance(body, dict) and "instance" in body:
        return {**body, "instance": request.url.path}
    return body
