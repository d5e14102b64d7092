"""Gateway refinements of the shared problem rendering."""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from services.kit.problems import Unprocessable, field_error, problem_response, validation_problem


def request_validation_problem(errors: list[dict[str, object]]) -> Unprocessable:
    """Turn FastAPI's validation errors into a 422; a body that is not JSON is named `body`."""
    for error in errors:
        if error.get("type") != "json_invalid":
            continue
        location = error.get("loc")
        position = location[1] if isinstance(location, tuple | list) and len(location) > 1 else None
        context = error.get("ctx")
        reason = context.get("error") if isinstance(context, dict) else None
        message = f"malformed JSON at character {position}: {reason or 'decode error'}"
        return Unprocessable(f"body: {message}", errors=[field_error("body", message, "json_invalid")])
    return validation_problem(errors)  # type: ignore[arg-type]


def install_gateway_problems(app: FastAPI) -> None:
    """Replace the shared validation handler, which would name a malformed body by a position."""

    async def _validation(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return problem_response(request_validation_problem(list(error.errors())), request)

    app.add_exception_handler(RequestValidationError, _validation)
