"""Public routes for CSV imports of contacts."""

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from services.contacts.imports.router import ImportAccepted, ImportOut
from services.gateway.keys.auth import require_scope
from services.gateway.routes.forward import client_for, forward, public_problem
from services.gateway.routes.json_body import StrictJsonRoute
from services.kit.problems import PROBLEM_MEDIA_TYPE

router = APIRouter(prefix="/v1", tags=["imports"], route_class=StrictJsonRoute)

ReadContacts = Annotated[object, Depends(require_scope("contacts:read"))]
WriteContacts = Annotated[object, Depends(require_scope("contacts:write"))]


@router.post("/imports", status_code=202, response_model=ImportAccepted)
async def post_import(
    request: Request,
    _: WriteContacts,
    file: Annotated[UploadFile, File(description="CSV file, UTF-8, header on line 1")],
    mapping: Annotated[str, Form(description='JSON object {"csv column": "target"}, such as {"Email": "email"}')],
    mode: Annotated[str, Form(description="upsert (default), overwrite or create_only; consent is never changed")] = "upsert",
    delimiter: Annotated[str, Form(description="',' (default), ';', tab or '|'")] = ",",
) -> Response:
    """Upload a CSV file with a column mapping; 202 with the import id. The same file twice runs once."""
    files = {"file": (file.filename or "import.csv", file.file, file.content_type or "text/csv")}
    data = {"mapping": mapping, "mode": mode, "delimiter": delimiter}
    upstream = await client_for(request, "contacts").send("POST", "/imports", files=files, data=data)
    media_type = PROBLEM_MEDIA_TYPE if upstream.status_code >= 400 else "application/json"
    headers = {"Location": f"/v1/imports/{upstream.json()['id']}"} if upstream.status_code == 202 else {}
    body = public_problem(request, upstream.json(), upstream.status_code)
    return JSONResponse(body, status_code=upstream.status_code, media_type=media_type, headers=headers)


@router.get("/imports/{import_id}", response_model=ImportOut)
async def read_import(import_id: str, request: Request, _: ReadContacts) -> Response:
    """Read an import's progress and counts, with each rejected row's line number and reason."""
    return await forward(request, "contacts", "GET", f"/imports/{import_id}")
