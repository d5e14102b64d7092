"""The error every contacts validator raises for one bad input value."""

from __future__ import annotations


class FieldValueError(ValueError):
    """A value rejected for one named field.

    `field` is the dotted path of the value in the request (`email`, `attributes.birthday`), so the
    API can name it in a 422 problem. `summary` is short and stable enough to count rejections by
    ("invalid email", "invalid date: birthday"), and `detail` says why and what to send instead.
    """

    def __init__(self, field: str, summary: str, detail: str, *, value: object = None) -> None:
        self.field = field
        self.summary = summary
        self.detail = detail
        self.value = value
        super().__init__(f"{summary}: {detail}")
