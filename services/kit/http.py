"""Calls between services over HTTP, with errors translated at this one boundary.

A `ServiceClient` is created once per process for each service it talks to. It sends the
correlation id and the internal token, retries idempotent calls on connection failures, and turns
what comes back into our own errors: an unreachable service or a timeout becomes `Unavailable`
(503 with Retry-After), and a problem response from the other service is raised again unchanged, so
a validation error reaches the caller with the field still named.
"""

import asyncio
from typing import Any

import httpx

from services.kit.correlation import CORRELATION_HEADER, current_correlation_id
from services.kit.logging import get_logger
from services.kit.problems import Problem, Unavailable

INTERNAL_TOKEN_HEADER = "X-Internal-Token"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
MAX_ATTEMPTS = 3

log = get_logger(__name__)


class UpstreamProblem(Problem):
    """A problem response returned by another service, passed on as it came."""

    def __init__(self, body: dict[str, Any], status: int, headers: dict[str, str]) -> None:
        super().__init__(str(body.get("detail", "")), headers=headers)
        self.status = status
        self.body = body

    def to_body(self, instance: str | None = None) -> dict[str, Any]:
        return dict(self.body)


class ServiceClient:
    """An HTTP client for one internal service."""

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        internal_token: str,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.service = service
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 3.0)),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            headers={INTERNAL_TOKEN_HEADER: internal_token},
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request and return the raw response; only transport failures raise."""
        headers = {CORRELATION_HEADER: current_correlation_id(), **kwargs.pop("headers", {})}
        attempts = MAX_ATTEMPTS if method.upper() in IDEMPOTENT_METHODS else 1
        for attempt in range(1, attempts + 1):
            try:
                return await self._client.request(method, path, headers=headers, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as error:
                if attempt == attempts:
                    raise self._unavailable(method, path, error) from error
                log.info("upstream.retry", service=self.service, path=path, attempt=attempt, error=repr(error))
                await asyncio.sleep(0.2 * attempt)
            except httpx.TransportError as error:
                raise self._unavailable(method, path, error) from error
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and return its JSON body, raising our errors for any failure."""
        response = await self.send(method, path, **kwargs)
        if response.is_success:
            return response.json() if response.content else None
        raise self._problem(response)

    def _unavailable(self, method: str, path: str, error: Exception) -> Unavailable:
        log.warning("upstream.unavailable", service=self.service, method=method, path=path, error=repr(error))
        return Unavailable(f"the {self.service} service cannot be reached; retry shortly", service=self.service)

    def _problem(self, response: httpx.Response) -> Problem:
        headers = {name: value for name, value in response.headers.items() if name.lower() == "retry-after"}
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "status" in body and "title" in body:
            return UpstreamProblem(body, response.status_code, headers)
        if response.status_code >= 500:
            return Unavailable(f"the {self.service} service failed with status {response.status_code}")
        problem = Problem(f"the {self.service} service answered {response.status_code}", headers=headers)
        problem.status = response.status_code
        return problem
