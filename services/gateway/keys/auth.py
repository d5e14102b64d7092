"""Authenticating public requests by API key and checking the key's scopes."""

from collections.abc import Awaitable, Callable

from fastapi import Request

from services.gateway.keys.models import ApiKey
from services.gateway.keys.scopes import grants
from services.gateway.keys.service import authenticate
from services.kit.problems import Forbidden, Unauthorized

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="nurture"'}


async def current_key(request: Request) -> ApiKey:
    """Return the API key of the request, or raise 401 for a missing or wrong key."""
    cached: ApiKey | None = getattr(request.state, "api_key", None)
    if cached is not None:
        return cached

    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send an API key as 'Authorization: Bearer <key>'", headers=_CHALLENGE)
    async with request.app.state.db.session() as session:
        key = await authenticate(session, token.strip())
    if key is None:
        raise Unauthorized("the API key is invalid or revoked", headers=_CHALLENGE)
    request.state.api_key = key
    return key


def require_scope(scope: str) -> Callable[[Request], Awaitable[ApiKey]]:
    """Build a dependency that needs a valid key holding `scope` (403 when it lacks it)."""

    async def _check(request: Request) -> ApiKey:
        key = await current_key(request)
        if not grants(key.scopes, scope):
            raise Forbidden(f"the API key lacks the scope {scope}", required_scope=scope)
        return key

    return _check
