"""Authenticating public requests by API key, checking the key's scopes and its rate limit."""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.gateway.keys.models import ApiKey
from services.gateway.keys.scopes import grants
from services.gateway.keys.service import authenticate
from services.gateway.limits.rate import STATE_KEY, RateLimiter
from services.kit.problems import Forbidden, Unauthorized

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="nurture"'}

# Declared as a FastAPI security dependency so OpenAPI lists the bearer scheme on every route that
# needs a key; errors stay ours (auto_error=False) so they are problem details.
bearer_scheme = HTTPBearer(
    scheme_name="bearerAuth",
    bearerFormat="nk_<prefix>_<secret>",
    description="An API key created with `nurture keys create`, sent as `Authorization: Bearer <key>`.",
    auto_error=False,
)

BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


async def key_from_header(request: Request) -> ApiKey | None:
    """Return the live API key named by the Authorization header, or None; cached per request."""
    cached: ApiKey | None = getattr(request.state, "api_key", None)
    if cached is not None:
        return cached

    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    async with request.app.state.db.session() as session:
        key = await authenticate(session, token.strip())
    request.state.api_key = key
    return key


async def current_key(request: Request, credentials: BearerCredentials) -> ApiKey:
    """Return the API key of the request and count it against the key's rate limit.

    Raises 401 for a missing or wrong key and 429 when the key is over its limit.
    """
    if credentials is None:
        raise Unauthorized("send an API key as 'Authorization: Bearer <key>'", headers=_CHALLENGE)
    key = await key_from_header(request)
    if key is None:
        raise Unauthorized("the API key is invalid or revoked", headers=_CHALLENGE)

    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        setattr(request.state, STATE_KEY, await limiter.hit(key.id, key.rate_limit))
    return key


CurrentKey = Annotated[ApiKey, Depends(current_key)]


def require_scope(scope: str, *more: str) -> Callable[..., Awaitable[ApiKey]]:
    """Build a dependency that needs a valid key holding `scope` and each of `more` (403 naming the first missing)."""

    async def _check(key: CurrentKey) -> ApiKey:
        for needed in (scope, *more):
            if not grants(key.scopes, needed):
                raise Forbidden(f"the API key lacks the scope {needed}", required_scope=needed)
        return key

    return _check
