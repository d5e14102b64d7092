"""Validate and normalise contact email addresses.

A contact is stored with its address as typed, except that surrounding whitespace is trimmed and the
domain is lower-cased (domains are case-insensitive, RFC 5321 section 2.4). The local part keeps its
case because some mail servers treat it as case-sensitive. Matching people uses a separate key that is
lower-cased as a whole, so `Ann@Example.COM ` and `ann@example.com` are the same person.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from services.contacts.people.errors import FieldValueError

# RFC 5321 limits a forward path to 256 octets including the angle brackets, so 254 characters remain.
MAX_EMAIL_LENGTH = 254


class InvalidEmailError(FieldValueError):
    """An email address that is not syntactically valid."""


@dataclass(frozen=True, slots=True)
class NormalisedEmail:
    """A valid email address in stored form and in matching form."""

    address: str
    match_key: str

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1]


def normalise_email(raw: object, *, field: str = "email") -> NormalisedEmail:
    """Validate `raw` (syntax only, no DNS look-up) and return its stored and matching forms.

    Raises InvalidEmailError naming `field` and the offending value when the address is not a string,
    is empty, is too long or breaks the address syntax.
    """
    if not isinstance(raw, str):
        raise InvalidEmailError(field, f"invalid {field}", f"expected a string, got {type(raw).__name__}", value=raw)

    trimmed = raw.strip()
    _check_length(trimmed, field)

    try:
        validated = validate_email(trimmed, check_deliverability=False)
    except EmailNotValidError as error:
        detail = f"{trimmed!r} is not a valid address: {error}"
        raise InvalidEmailError(field, f"invalid {field}", detail, value=raw) from error

    local_part = trimmed.rsplit("@", 1)[0]
    address = f"{local_part}@{validated.domain}"
    return NormalisedEmail(address=address, match_key=email_match_key_of(address))


def email_match_key(raw: object, *, field: str = "email") -> str:
    """Return the key that identifies the person behind `raw`; raises InvalidEmailError like normalise_email."""
    return normalise_email(raw, field=field).match_key


def email_match_key_of(address: str) -> str:
    # NFC first, so an accent typed as one code point or as a letter plus a combining mark matches.
    return unicodedata.normalize("NFC", address).lower()


def _check_length(trimmed: str, field: str) -> None:
    if not trimmed:
        raise InvalidEmailError(field, f"invalid {field}", "the address is empty", value=trimmed)

    if len(trimmed) > MAX_EMAIL_LENGTH:
        raise InvalidEmailError(
            field,
            f"invalid {field}",
            f"the address has {len(trimmed)} characters, more than the maximum of {MAX_EMAIL_LENGTH}",
            value=trimmed,
        )
