"""Defining custom attributes and reading their definitions."""

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.contacts.attributes.models import AttributeDefinitionRow
from services.contacts.attributes.types import AttributeDefinition
from services.kit import clock
from services.kit.problems import Conflict


async def load_definitions(session: AsyncSession) -> dict[str, AttributeDefinition]:
    """Return every attribute definition by name."""
    rows = (await session.exec(select(AttributeDefinitionRow))).all()
    return {row.name: row.to_definition() for row in rows}


async def define_attribute(session: AsyncSession, definition: AttributeDefinition) -> tuple[AttributeDefinitionRow, bool]:
    """Create or update a definition (not committed); return it and whether it is new.

    The type of a defined attribute cannot change, because stored values and segment filters rely on it.
    """
    now = clock.now()
    row = await session.get(AttributeDefinitionRow, definition.name)
    if row is None:
        row = AttributeDefinitionRow(name=definition.name, type=definition.type.value, created_at=now, updated_at=now, label="")
        created = True
    elif row.type != definition.type.value:
        raise Conflict(
            f"attribute {definition.name} is defined with type {row.type}; its type cannot change to "
            f"{definition.type.value}. Define a new attribute under another name instead.",
            errors=[{"field": "type", "message": f"the type of {definition.name} is {row.type}", "type": "conflict"}],
        )
    else:
        created = False

    row.label = definition.label
    row.description = definition.description
    row.allowed_values = list(definition.allowed_values) if definition.allowed_values is not None else None
    row.updated_at = now
    session.add(row)
    return row, created
