"""The table of custom attribute definitions."""

from datetime import datetime

from sqlalchemy import JSON
from sqlmodel import Field

from services.contacts.attributes.types import AttributeDefinition, AttributeType
from services.contacts.db import ContactsBase
from services.kit.db import UTCDateTime


class AttributeDefinitionRow(ContactsBase, table=True):  # type: ignore[call-arg]
    __tablename__ = "attribute_definition"

    name: str = Field(primary_key=True, max_length=63)
    type: str = Field(max_length=16)
    label: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    allowed_values: list[str] | None = Field(default=None, sa_type=JSON)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)

    def to_definition(self) -> AttributeDefinition:
        return AttributeDefinition(
            name=self.name,
            type=AttributeType(self.type),
            label=self.label,
            description=self.description,
            allowed_values=tuple(self.allowed_values) if self.allowed_values is not None else None,
        )
