"""Identifiers of the sequencer's own records."""

import uuid


def new_id(prefix: str) -> str:
    """Return a new random id such as `seq_3f9c...`, readable in logs and URLs."""
    return f"{prefix}_{uuid.uuid4().hex}"
