"""The gateway's OpenAPI document: the generated one, completed with problems and conventions.

FastAPI documents the routes, their models and the bearer scheme (from the API-key dependency). This
module adds what middleware and shared handlers do outside the routes' view: problem responses
(RFC 9457) for every error status a route can return, the Idempotency-Key header of public POSTs,
and the rate-limit headers. Routes that other teams add are covered without any change here.
"""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.kit.problems import PROBLEM_MEDIA_TYPE

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": {"description": "Requests the API key may send per window", "schema": {"type": "integer"}},
    "RateLimit-Remaining": {"description": "Requests left in the current window", "schema": {"type": "integer"}},
    "RateLimit-Reset": {"description": "Seconds until the window ends", "schema": {"type": "integer"}},
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}
_DESCRIPTIONS = {
    400: "The request could not be read",
    401: "The API key or the provider's credentials are missing or invalid",
    403: "The API key lacks the scope, or the provider's request failed verification",
    404: "Not found",
    406: "The provider's request replays a token of another event",
    409: "Conflict with the current state, or the Idempotency-Key is in use by a running request",
    413: "The request body is larger than the limit",
    422: "Validation failed; `errors` names each invalid field",
    429: "The API key is over its rate limit",
    503: "A dependency is unavailable; retry after the `Retry-After` seconds",
}
_WRITE_METHODS = {"post", "put", "patch", "delete"}

PROBLEM_SCHEMAS = {
    "Problem": {
        "title": "Problem",
        "type": "object",
        "description": "An error as RFC 9457 problem details.",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string", "description": "URI naming the kind of problem"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string", "description": "The request path"},
            "errors": {"type": "array", "items": {"$ref": "#/components/schemas/ProblemFieldError"}},
        },
        "additionalProperties": True,
    },
    "ProblemFieldError": {
        "title": "ProblemFieldError",
        "type": "object",
        "required": ["field", "message"],
        "properties": {
            "field": {"type": "string", "description": "Dotted path of the invalid field, or a header name"},
            "message": {"type": "string"},
            "type": {"type": "string"},
        },
    },
}

IDEMPOTENCY_PARAMETER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "A unique key per logical request (e.g. a UUID). The same key with the same request replays "
        "the first 2xx response for 24 hours; with a different request it is a 422."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
}


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` return the completed document (built once, then cached)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            app.openapi_schema = complete_schema(schema)
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def complete_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Add problem responses, the Idempotency-Key header and rate-limit headers to `schema`."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(PROBLEM_SCHEMAS)
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            _complete_operation(path, method, operation)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def _complete_operation(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    authenticated = bool(operation.get("security"))
    has_body = "requestBody" in operation

    statuses = {404, 503}
    if has_body:
        statuses |= {400, 413, 422}
    if operation.get("parameters"):
        statuses.add(422)
    if authenticated:
        statuses |= {401, 403, 429}
        if method in _WRITE_METHODS:
            statuses.add(409)
    if path.startswith("/v1/webhooks/"):
        statuses |= {401, 403, 406}

    for status in sorted(statuses):
        responses[str(status)] = _problem_response(status)
    if authenticated:
        _add_rate_limit_headers(responses)
    if method == "post" and authenticated and path.startswith("/v1/"):
        operation.setdefault("parameters", []).append(IDEMPOTENCY_PARAMETER)


def _problem_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _DESCRIPTIONS[status],
        "content": {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}},
    }
    if status in (409, 429, 503):
        response["headers"] = dict(_RETRY_AFTER)
    return response


def _add_rate_limit_headers(responses: dict[str, Any]) -> None:
    for status, response in responses.items():
        if status.startswith("2") or status == "429":
            response.setdefault("headers", {}).update(_RATE_LIMIT_HEADERS)
