"""Contact identity and profile fields: email, time zone, names and company."""

from services.contacts.people.email import (
    MAX_EMAIL_LENGTH,
    InvalidEmailError,
    NormalisedEmail,
    email_match_key,
    email_match_key_of,
    normalise_email,
)
from services.contacts.people.errors import FieldValueError
from services.contacts.people.profile import (
    COMPANY_FIELDS,
    CONTACT_TEXT_FIELDS,
    MAX_COMPANY_SIZE,
    MAX_NAME_LENGTH,
    InvalidProfileError,
    normalise_domain,
    validate_company,
    validate_company_size,
    validate_contact_timezone,
    validate_text,
)
from services.contacts.people.timezone import InvalidTimezoneError, load_timezone, validate_timezone

__all__ = [
    "COMPANY_FIELDS",
    "CONTACT_TEXT_FIELDS",
    "FieldValueError",
    "InvalidEmailError",
    "InvalidProfileError",
    "InvalidTimezoneError",
    "MAX_COMPANY_SIZE",
    "MAX_EMAIL_LENGTH",
    "MAX_NAME_LENGTH",
    "NormalisedEmail",
    "email_match_key",
    "email_match_key_of",
    "load_timezone",
    "normalise_domain",
    "normalise_email",
    "validate_company",
    "validate_company_size",
    "validate_contact_timezone",
    "validate_text",
    "validate_timezone",
]
