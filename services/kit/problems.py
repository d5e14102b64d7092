"""Errors as RFC 9457 problem details, raised by every service and rendered in one place.

A service raises a `Problem` subclass; `install_problem_handlers` renders it as
`application/problem+json` with `type`, `title`, `status`, `detail` and, for validation errors, an
`errors` list naming each invalid field. Framework errors (request validation, unknown routes, an
unreachable database) are rendered the same way, so no expected condition becomes a bare 500.
"""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.kit.logging import get_logger

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://nurture.dev/problems/"

log = get_logger(__name__)


class Problem(Exception):
    """An error with an HTTP status, rendered as problem details."""

    status = 500
    title = "Internal error"
    slug = "internal"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.extensions = extensions

    def to_body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extensions)
        return body


class BadRequest(Problem):
    status, title, slug = 400, "Bad request", "bad-request"


class Unauthorized(Problem):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class Forbidden(Problem):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(Problem):
    status, title, slug = 404, "Not found", "not-found"


class Conflict(Problem):
    status, title, slug = 409, "Conflict", "conflict"


class PayloadTooLarge(Problem):
    status, title, slug = 413, "Payload too large", "payload-too-large"


class UnsupportedMediaType(Problem):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


class Unprocessable(Problem):
    """Invalid input; `errors` holds one `{field, message, type}` entry per invalid field."""

    status, title, slug = 422, "Validation failed", "validation"


class TooManyRequests(Problem):
    status, title, slug = 429, "Too many requests", "rate-limited"


class Unavailable(Problem):
    """A dependency (database, Redis, another service) cannot be reached right now."""

    status, title, slug = 503, "Service unavailable", "unavailable"

    def __init__(self, detail: str, *, retry_after_s: int = 5, **kwargs: Any) -> None:
        headers = {"Retry-After": str(retry_after_s), **kwargs.pop("headers", {})}
        super().__init__(detail, headers=headers, **kwargs)


def field_error(field: str, message: str, kind: str = "invalid") -> dict[str, str]:
    """Build one entry of a problem's `errors` list."""
    return {"field": field, "message": message, "type": kind}


def invalid(field: str, message: str, kind: str = "invalid") -> Unprocessable:
    """Return a 422 problem about one field, ready to raise."""
    return Unprocessable(f"{field}: {message}", errors=[field_error(field, message, kind)])


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    instance = request.url.path if request is not None else None
    return JSONResponse(
        problem.to_body(instance),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def _location_to_field(location: tuple[Any, ...]) -> str:
    # A field is named as the client sent it: `email` in the body, `limit` in the query string.
    parts = [str(part) for part in location]
    if parts and parts[0] in {"body", "query", "path", "header"} and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts) if parts else "body"


def validation_problem(errors: list[dict[str, Any]]) -> Unprocessable:
    """Turn pydantic's error list into a 422 problem naming each field."""
    entries = [
        field_error(_location_to_field(tuple(error.get("loc", ()))), str(error.get("msg")), str(error.get("type")))
        for error in errors
    ]
    fields = ", ".join(entry["field"] for entry in entries)
    return Unprocessable(f"invalid fields: {fields}", errors=entries)


# SQLSTATE codes PostgreSQL sends while it cannot serve at all: class 08 is a connection
# exception, 57P01 to 57P03 are a shutdown or a server still starting up, 53300 is too many
# connections. asyncpg raises them as a plain DBAPIError, not an OperationalError.
_UNAVAILABLE_SQLSTATE_CLASSES = ("08",)
_UNAVAILABLE_SQLSTATES = {"57P01", "57P02", "57P03", "53300"}


# SQLSTATE codes of a transaction PostgreSQL rolled back because it collided with another one:
# 40P01 is a deadlock, 40001 a serialization failure. Running it again is expected to succeed.
_CONFLICT_SQLSTATES = {"40P01", "40001"}


def _sqlstate(error: DBAPIError) -> str:
    return str(getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None) or "")


def is_transaction_conflict(error: DBAPIError) -> bool:
    """Tell whether the database rolled the transaction back as a deadlock or serialization victim."""
    return _sqlstate(error) in _CONFLICT_SQLSTATES


def _is_connection_failure(error: DBAPIError) -> bool:
    if error.connection_invalidated or isinstance(error, OperationalError):
        return True

    sqlstate = _sqlstate(error)
    return sqlstate in _UNAVAILABLE_SQLSTATES or sqlstate.startswith(_UNAVAILABLE_SQLSTATE_CLASSES)


def install_problem_handlers(app: FastAPI) -> None:
    """Render every error the app can raise as problem details."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, error: Problem) -> JSONResponse:
        if error.status >= 500:
            log.warning("request.failed", path=request.url.path, status=error.status, detail=error.detail)
        return problem_response(error, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return problem_response(validation_problem(list(error.errors())), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        problem: Problem = Problem(str(error.detail))
        problem.status = error.status_code
        problem.title = str(error.detail)
        problem.slug = f"http-{error.status_code}"
        problem.headers = dict(error.headers or {})
        return problem_response(problem, request)

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, error: DBAPIError) -> JSONResponse:
        if is_transaction_conflict(error):
            # The transaction was rolled back whole, so the client may send the request again.
            log.warning("request.database_conflict", path=request.url.path, error=str(error.orig)[:200])
            return problem_response(Unavailable("the request collided with concurrent work and was rolled back; retry it", retry_after_s=1), request)
        if not _is_connection_failure(error):
            log.exception("request.database_error", path=request.url.path)
            return problem_response(Problem("the request failed on a database error"), request)
        log.warning("request.database_unavailable", path=request.url.path, error=str(error.orig))
        return problem_response(Unavailable("the database cannot be reached; retry shortly"), request)

    @app.exception_handler(PoolTimeoutError)
    async def _pool(request: Request, error: PoolTimeoutError) -> JSONResponse:
        log.warning("request.database_pool_timeout", path=request.url.path)
        return problem_response(Unavailable("the database is busy; retry shortly"), request)

    @app.exception_handler(OSError)
    async def _connection(request: Request, error: OSError) -> JSONResponse:
        log.warning("request.dependency_unavailable", path=request.url.path, error=repr(error))
        return problem_response(Unavailable("a dependency cannot be reached; retry shortly"), request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("request.unexpected_error", path=request.url.path)
        return problem_response(Problem("an unexpected error occurred; it has been logged"), request)
