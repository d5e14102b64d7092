"""Validate the fixed profile fields of a contact and of its company.

The contact fields are `first_name`, `last_name` and `timezone` (the email has its own module); the
company fields are `domain`, `name`, `size` and `industry`. Text keeps its script and case as typed;
only surrounding whitespace is trimmed.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from services.contacts.people.errors import FieldValueError
from services.contacts.people.timezone import validate_timezone

MAX_NAME_LENGTH = 200
MAX_COMPANY_SIZE = 10_000_000
# RFC 1035: 253 characters for a whole domain name in text form, 63 for one label.
MAX_DOMAIN_LENGTH = 253
MAX_LABEL_LENGTH = 63

CONTACT_TEXT_FIELDS = ("first_name", "last_name")
COMPANY_FIELDS = ("domain", "name", "size", "industry")


class InvalidProfileError(FieldValueError):
    """A contact or company field with a value of the wrong type, length or form."""


def validate_text(raw: object, *, field: str, max_length: int = MAX_NAME_LENGTH) -> str | None:
    """Return `raw` trimmed, None for a blank value, or raise InvalidProfileError naming `field`.

    Control characters (such as NUL or a line break) are rejected because a name is a single line.
    """
    if raw is None:
        return None

    if not isinstance(raw, str):
        raise InvalidProfileError(field, f"invalid {field}", f"expected a string, got {type(raw).__name__}", value=raw)

    text = raw.strip()
    if not text:
        return None

    if len(text) > max_length:
        detail = f"the value has {len(text)} characters, more than the maximum of {max_length}"
        raise InvalidProfileError(field, f"invalid {field}", detail, value=raw)

    control = next((char for char in text if unicodedata.category(char) == "Cc"), None)
    if control is not None:
        detail = f"the value contains the control character U+{ord(control):04X}"
        raise InvalidProfileError(field, f"invalid {field}", detail, value=raw)

    return text


def normalise_domain(raw: object, *, field: str = "company.domain") -> str | None:
    """Return a company domain lower-cased without a trailing dot, None if blank, or raise.

    Internationalised names stay in Unicode form (`bücher.de`) and are checked through their IDNA
    ASCII form. A URL such as `https://example.com/` is rejected with a hint instead of being guessed at.
    """
    text = validate_text(raw, field=field, max_length=MAX_DOMAIN_LENGTH)
    if text is None:
        return None

    domain = text.lower().rstrip(".")
    problem = _domain_problem(domain)
    if problem is not None:
        raise InvalidProfileError(field, f"invalid {field}", f"{text!r} is not a domain name: {problem}", value=raw)

    return domain


def validate_company_size(raw: object, *, field: str = "company.size") -> int | None:
    """Return the number of employees as an int, None if missing, or raise InvalidProfileError."""
    if raw is None:
        return None

    if isinstance(raw, bool) or not isinstance(raw, int):
        detail = f"expected a whole number of employees, got {type(raw).__name__}"
        raise InvalidProfileError(field, f"invalid {field}", detail, value=raw)

    if not 0 <= raw <= MAX_COMPANY_SIZE:
        detail = f"{raw} is outside the range 0 to {MAX_COMPANY_SIZE}"
        raise InvalidProfileError(field, f"invalid {field}", detail, value=raw)

    return raw


def validate_company(raw: object, *, field: str = "company") -> dict[str, Any]:
    """Return the company fields that have a value, validated, or raise naming the bad field.

    Unknown keys are rejected so that a typo such as `industy` is not silently dropped.
    """
    if not isinstance(raw, Mapping):
        raise InvalidProfileError(field, f"invalid {field}", f"expected an object, got {type(raw).__name__}", value=raw)

    unknown = sorted(str(key) for key in raw if key not in COMPANY_FIELDS)
    if unknown:
        detail = f"unknown field {unknown[0]!r}; the company fields are {', '.join(COMPANY_FIELDS)}"
        raise InvalidProfileError(f"{field}.{unknown[0]}", f"unknown field: {field}.{unknown[0]}", detail, value=raw)

    company = {
        "domain": normalise_domain(raw.get("domain"), field=f"{field}.domain"),
        "name": validate_text(raw.get("name"), field=f"{field}.name"),
        "size": validate_company_size(raw.get("size"), field=f"{field}.size"),
        "industry": validate_text(raw.get("industry"), field=f"{field}.industry"),
    }
    return {key: value for key, value in company.items() if value is not None}


def validate_contact_timezone(raw: object, *, field: str = "timezone") -> str | None:
    """Return a valid IANA name, None if blank, or raise InvalidTimezoneError naming `field`."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None

    return validate_timezone(raw, field=field)


def _domain_problem(domain: str) -> str | None:
    if "://" in domain or "/" in domain:
        return "send the bare domain, such as 'example.com', not a URL"

    if "." not in domain:
        return "a domain needs at least one dot, such as 'example.com'"

    if "" in domain.split("."):
        return "it has an empty label (two dots in a row, or a leading dot)"

    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError as error:
        return f"it cannot be converted to IDNA ({error})"

    if len(ascii_domain) > MAX_DOMAIN_LENGTH:
        return f"it is longer than {MAX_DOMAIN_LENGTH} characters in ASCII form"

    for label in ascii_domain.split("."):
        problem = _label_problem(label)
        if problem is not None:
            return problem

    return None


def _label_problem(label: str) -> str | None:
    if not label:
        return "it has an empty label (two dots in a row)"

    if len(label) > MAX_LABEL_LENGTH:
        return f"the label {label[:20]!r}... is longer than {MAX_LABEL_LENGTH} characters"

    if label.startswith("-") or label.endswith("-"):
        return f"the label {label!r} starts or ends with a hyphen"

    if not all(char.isascii() and (char.isalnum() or char == "-") for char in label):
        return f"the label {label!r} contains a character other than a letter, digit or hyphen"

    return None
