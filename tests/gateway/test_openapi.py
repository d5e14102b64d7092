"""The gateway's OpenAPI document, its interactive docs, and a property-based run against it.

The schemathesis run generates requests for every operation in /openapi.json, routes added by any
team included, sends them to the real services in process and checks that no answer is a 5xx or
breaks the documented schema (status codes, media types, headers, bodies).
"""

import asyncio
import copy
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.kit.problems import PROBLEM_MEDIA_TYPE

from .conftest import Apps, new_key
from .isolated import isolated_services

CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)
# Examples per operation; raise it for a deeper run, e.g. NURTURE_API_EXAMPLES=200.
MAX_EXAMPLES = int(os.environ.get("NURTURE_API_EXAMPLES", "10"))
BASE_URL = "http://gateway"

# FastAPI writes OpenAPI 3.1, which schemathesis 3 supports behind this switch.
schemathesis.experimental.OPEN_API_3_1.enable()


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]


async def test_openapi_lists_public_surface(gateway_app: Apps) -> None:
    _, client = gateway_app

    response = await client.get("/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/v1/contacts", "/v1/events", "/t/o/{token}", "/t/c/{token}", "/u/{token}"):
        assert path in paths, path
    for provider in ("sendgrid", "mailgun", "postmark", "ses"):
        assert "post" in paths[f"/v1/webhooks/{provider}"]


async def test_openapi_declares_bearer_security(gateway_app: Apps) -> None:
    _, client = gateway_app

    schema = (await client.get("/openapi.json")).json()

    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, method, operation in operations(schema):
        public_route = path.startswith("/v1/") and not path.startswith("/v1/webhooks/")
        assert bool(operation.get("security")) == public_route, f"{method} {path}"
        if public_route:
            assert operation["security"] == [{"bearerAuth": []}]
            assert {"401", "403", "429"} <= set(operation["responses"]), f"{method} {path}"


async def test_openapi_errors_are_problems(gateway_app: Apps) -> None:
    _, client = gateway_app

    schema = (await client.get("/openapi.json")).json()

    assert "Problem" in schema["components"]["schemas"]
    for path, method, operation in operations(schema):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert list(response["content"]) == [PROBLEM_MEDIA_TYPE], f"{method} {path} {status}"
                assert response["content"][PROBLEM_MEDIA_TYPE]["schema"] == {"$ref": "#/components/schemas/Problem"}
        assert "503" in operation["responses"], f"{method} {path}"


async def test_openapi_documents_idempotency_and_limits(gateway_app: Apps) -> None:
    _, client = gateway_app

    schema = (await client.get("/openapi.json")).json()

    post_event = schema["paths"]["/v1/events"]["post"]
    assert "Idempotency-Key" in [parameter["name"] for parameter in post_event["parameters"]]
    assert "Retry-After" in post_event["responses"]["429"]["headers"]
    assert "RateLimit-Remaining" in post_event["responses"]["202"]["headers"]
    webhook = schema["paths"]["/v1/webhooks/sendgrid"]["post"]
    assert "Idempotency-Key" not in [parameter["name"] for parameter in webhook.get("parameters", [])]


async def test_docs_page_is_served(gateway_app: Apps) -> None:
    _, client = gateway_app

    response = await client.get("/docs")

    assert response.status_code == 200
    assert "swagger-ui" in response.text
    assert "/openapi.json" in response.text


@pytest.fixture(scope="module")
async def services(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, FastAPI]]:
    async with isolated_services(Path(tmp_path_factory.mktemp("api"))) as apps:
        yield apps


async def test_api_holds_its_schema(services: dict[str, FastAPI]) -> None:
    gateway = services["gateway"]
    # Unlimited, so the run exercises the routes rather than the rate limit.
    headers = {"Authorization": f"Bearer {await new_key(gateway, rate_limit=0)}"}
    # Failure reports quote the request as a curl command; schemathesis's default Python sample and
    # its output sanitising expect a `requests` request, and these requests are httpx ones.
    schema = schemathesis.from_dict(
        break_reference_cycles(gateway.openapi()), base_url=BASE_URL, code_sample_style="curl", sanitize_output=False
    )
    loop = asyncio.get_running_loop()

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url=BASE_URL, timeout=30) as client:

        def send(case: schemathesis.Case) -> httpx.Response:
            prepared = requests.Request(**case.as_transport_kwargs(base_url=BASE_URL, headers=headers)).prepare()
            body = prepared.body.encode() if isinstance(prepared.body, str) else prepared.body
            request = client.request(prepared.method or "GET", prepared.url or "", headers=dict(prepared.headers), content=body)
            return asyncio.run_coroutine_threadsafe(request, loop).result(timeout=60)

        failures = await asyncio.to_thread(run_all, schema, send)

    assert not failures, "\n\n".join(failures)


def break_reference_cycles(document: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of `document` whose component schemas never refer back to themselves.

    hypothesis-jsonschema cannot generate recursive schemas (a sequence step that contains
    steps). Each reference that closes a cycle becomes `{}` (any JSON value), so the outer levels
    are still generated from their real schema and the server's validation sees the rest.
    """
    copied = copy.deepcopy(document)
    components: dict[str, Any] = copied.get("components", {}).get("schemas", {})
    prefix = "#/components/schemas/"

    def visit(node: Any, stack: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [visit(item, stack) for item in node]
        if not isinstance(node, dict):
            return node
        reference = node.get("$ref")
        if isinstance(reference, str) and reference.startswith(prefix):
            name = reference.removeprefix(prefix)
            return {} if name in stack else node
        return {key: visit(value, stack) for key, value in node.items()}

    def close(name: str, stack: tuple[str, ...]) -> None:
        components[name] = visit(components[name], (*stack, name))
        for child in _references(components[name], prefix):
            if child not in stack and child != name and child in components:
                close(child, (*stack, name))

    for name in list(components):
        close(name, ())
    return copied


def _references(node: Any, prefix: str) -> set[str]:
    if isinstance(node, list):
        return set().union(*(_references(item, prefix) for item in node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = {node["$ref"].removeprefix(prefix)} if isinstance(node.get("$ref"), str) else set()
    return found.union(*(_references(value, prefix) for value in node.values()))


def run_all(schema: Any, send: Any) -> list[str]:
    """Run every operation's examples (in a thread, so the event loop stays free to serve them)."""
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        try:
            run_operation(operation, send)
        except Exception as error:  # noqa: BLE001 - collect every operation's failure, then report all
            failures.append(f"{operation.verbose_name}: {type(error).__name__}: {error}")
    return failures


def run_operation(operation: Any, send: Any) -> None:
    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        response = send(case)
        case.validate_response(response, checks=CHECKS)

    check()
