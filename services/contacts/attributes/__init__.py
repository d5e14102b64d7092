"""Custom contact attributes: typed definitions and value validation."""

from services.contacts.attributes.types import (
    ATTRIBUTE_NAME_PATTERN,
    LIST_SEPARATOR,
    MAX_LIST_ITEM_LENGTH,
    MAX_LIST_ITEMS,
    MAX_STRING_LENGTH,
    AttributeDefinition,
    AttributeType,
    AttributeValueError,
    StoredValue,
    UndefinedAttributeError,
    coerce_attributes,
    coerce_value,
    parse_text_value,
    require_definition,
)

__all__ = [
    "ATTRIBUTE_NAME_PATTERN",
    "AttributeDefinition",
    "AttributeType",
    "AttributeValueError",
    "LIST_SEPARATOR",
    "MAX_LIST_ITEMS",
    "MAX_LIST_ITEM_LENGTH",
    "MAX_STRING_LENGTH",
    "StoredValue",
    "UndefinedAttributeError",
    "coerce_attributes",
    "coerce_value",
    "parse_text_value",
    "require_definition",
]
