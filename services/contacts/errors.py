"""Rendering the domain libraries' errors as problem details, so validators stay free of HTTP."""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.contacts.attributes.types import UndefinedAttributeError
from services.contacts.imports.mapping import ImportFileError
from services.contacts.people.errors import FieldValueError
from services.contacts.stages.machine import StageError, StageUnchanged, TransitionNotAllowed
from services.kit.problems import Conflict, Unprocessable, field_error, problem_response


def install_domain_errors(app: FastAPI) -> None:
    """Render bad values as 422 naming the field, and stage moves the rules forbid as 409."""

    async def _field_value(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, FieldValueError)
        kind = "undefined" if isinstance(error, UndefinedAttributeError) else "invalid"
        problem = Unprocessable(f"{error.field}: {error.summary}: {error.detail}", errors=[field_error(error.field, error.detail, kind)])
        return problem_response(problem, request)

    async def _stage(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StageError)
        if isinstance(error, StageUnchanged | TransitionNotAllowed):
            kind = "unchanged" if isinstance(error, StageUnchanged) else "not_allowed"
            problem = Conflict(error.detail, errors=[field_error(error.field, error.detail, kind)])
            return problem_response(problem, request)
        return problem_response(Unprocessable(f"{error.field}: {error.detail}", errors=[field_error(error.field, error.detail)]), request)

    async def _import_file(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ImportFileError)
        return problem_response(Unprocessable(f"{error.field}: {error.detail}", errors=[field_error(error.field, error.detail)]), request)

    app.add_exception_handler(FieldValueError, _field_value)
    app.add_exception_handler(StageError, _stage)
    app.add_exception_handler(ImportFileError, _import_file)
