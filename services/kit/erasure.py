"""The one-way key under which a service remembers that a contact was erased."""

import hashlib


def erased_key(contact_id: str) -> str:
    """Return the SHA-256 of a contact id, so a late event can be recognised without keeping the id."""
    return hashlib.sha256(contact_id.encode()).hexdigest()
