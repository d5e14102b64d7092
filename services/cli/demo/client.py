"""The demo's HTTP client for the public gateway API: problems become errors, lists are paged through."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from services.cli.demo.errors import DemoError

# The demo waits out a rate limit or a restarting service instead of failing the whole run.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# A pooled keep-alive connection that the server closes just as a request goes out fails with one
# of these. The request is sent again: a GET or PUT is safe to repeat, and a POST carries an
# Idempotency-Key, so the gateway returns the first response to a repeat.
TRANSPORT_ERRORS = (httpx.RemoteProtocolError, httpx.ConnectError, httpx.ReadError, httpx.WriteError)
MAX_TRIES = 8
PAGE_LIMIT = 500


class DemoApiError(DemoError):
    """A call to the public API that failed; the message carries the problem's detail and fields."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{method} {path} failed with {status}: {_describe(body)}")


def _describe(body: Any) -> str:
    if not isinstance(body, dict):
        return str(body)[:500]

    detail = str(body.get("detail") or body.get("title") or body)
    errors = body.get("errors") or []
    fields = "; ".join(f"{error.get('field')}: {error.get('message')}" for error in errors if isinstance(error, dict))
    return f"{detail} ({fields})" if fields else detail


class DemoClient:
    """An API-key client of one gateway, shared by every step of the demo."""

    def __init__(self, base_url: str, api_key: str, *, timeout_s: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"}
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        self.http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout_s, limits=limits)

    async def close(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> DemoClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one call and return its JSON body (None when empty); raise DemoApiError for a problem."""
        if method == "POST":
            kwargs["headers"] = {"Idempotency-Key": uuid.uuid4().hex, **kwargs.get("headers", {})}
        for attempt in range(1, MAX_TRIES + 1):
            try:
                response = await self.http.request(method, path, **kwargs)
            except TRANSPORT_ERRORS as error:
                if attempt == MAX_TRIES:
                    raise DemoError(f"{method} {path} failed after {MAX_TRIES} tries: {error!r}") from error
                await asyncio.sleep(_backoff_s(attempt))
                continue
            if response.status_code not in RETRY_STATUSES or attempt == MAX_TRIES:
                break
            await asyncio.sleep(_retry_after_s(response, attempt))

        body = _json(response)
        if response.status_code >= 400:
            raise DemoApiError(method, path, response.status_code, body)
        return body

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=_clean(params))

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return await self.request("POST", path, json=json, **kwargs)

    async def put(self, path: str, json: Any = None) -> Any:
        return await self.request("PUT", path, json=json)

    async def pages(self, path: str, **params: Any) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield every page of a list, following `next_cursor` to the end."""
        cursor: str | None = None
        while True:
            page = await self.get(path, **params, limit=PAGE_LIMIT, cursor=cursor)
            yield page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def items(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Return every item of a list."""
        collected: list[dict[str, Any]] = []
        async for page in self.pages(path, **params):
            collected.extend(page)
        return collected


def _retry_after_s(response: httpx.Response, attempt: int) -> float:
    header = response.headers.get("retry-after", "")
    if header.isdigit():
        return min(float(header), 30.0)
    return _backoff_s(attempt)


def _backoff_s(attempt: int) -> float:
    return min(0.25 * 2**attempt, 10.0)


def _json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in params.items() if value is not None}
