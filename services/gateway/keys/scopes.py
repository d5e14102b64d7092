"""Scopes an API key can hold: one area and an access level, or `*` for every scope."""

AREAS = ("contacts", "events", "segments", "scoring", "sequences", "reports")
LEVELS = ("read", "write")
ALL_SCOPES = tuple(f"{area}:{level}" for area in AREAS for level in LEVELS)
WILDCARD = "*"


def validate_scopes(scopes: list[str]) -> list[str]:
    """Return the scopes sorted and de-duplicated, or raise ValueError naming an unknown one."""
    for scope in scopes:
        if scope != WILDCARD and scope not in ALL_SCOPES:
            raise ValueError(f"unknown scope {scope!r}; known scopes: *, {', '.join(ALL_SCOPES)}")
    return sorted(set(scopes))


def grants(held: list[str], needed: str) -> bool:
    """Tell whether the held scopes allow `needed`; write access to an area includes read access."""
    if WILDCARD in held or needed in held:
        return True
    area, _, level = needed.partition(":")
    return level == "read" and f"{area}:write" in held
