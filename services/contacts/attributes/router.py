"""Internal routes that define custom attributes."""

from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import IntegrityError

from services.contacts.attributes.service import define_attribute, load_definitions
from services.contacts.attributes.types import ATTRIBUTE_NAME_PATTERN, AttributeDefinition, AttributeType
from services.contacts.deps import Session
from services.kit.problems import Conflict, validation_problem

router = APIRouter(tags=["attributes"])

AttributeName = Annotated[str, Path(pattern=ATTRIBUTE_NAME_PATTERN, description="lower-case snake_case")]


class AttributeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: AttributeType
    label: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    allowed_values: list[str] | None = Field(default=None, description="The values of an enum attribute")


class AttributeOut(BaseModel):
    name: str
    type: AttributeType
    label: str
    description: str | None
    allowed_values: list[str] | None


@router.put("/attributes/{name}", response_model=AttributeOut)
async def put_attribute(name: AttributeName, body: AttributeIn, response: Response, session: Session) -> AttributeOut:
    """Define an attribute (201) or change its label, description or allowed values (200); the type is fixed."""
    try:
        definition = AttributeDefinition(name=name, **body.model_dump())
    except ValidationError as error:
        # The only check across fields is about allowed_values, so name it when pydantic names none.
        errors = [{**entry, "loc": entry["loc"] or ("allowed_values",)} for entry in error.errors()]
        raise validation_problem(errors) from None

    _, created = await define_attribute(session, definition)
    try:
        await session.commit()
    except IntegrityError:
        raise Conflict(f"attribute {name} was defined by another request at the same time; retry") from None
    response.status_code = 201 if created else 200
    return _out(definition)


@router.get("/attributes", response_model=dict[str, list[AttributeOut]])
async def list_attributes(session: Session) -> dict[str, list[AttributeOut]]:
    """List every attribute definition."""
    definitions = await load_definitions(session)
    return {"items": [_out(definition) for definition in sorted(definitions.values(), key=lambda item: item.name)]}


def _out(definition: AttributeDefinition) -> AttributeOut:
    values = list(definition.allowed_values) if definition.allowed_values is not None else None
    return AttributeOut(
        name=definition.name,
        type=definition.type,
        label=definition.label,
        description=definition.description,
        allowed_values=values,
    )
