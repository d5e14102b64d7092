"""Strict parsing of JSON request bodies: only what RFC 8259 allows, and what a service can store.

Python's json module accepts `NaN`, `Infinity`, numbers that overflow to infinity and escapes of
unpaired surrogates (`\\ud800`), none of which is JSON that another parser reads the same way. A NaN
became null, which cleared an attribute, and a lone surrogate failed in the database. Each of them
is now a 422 naming `body`, as any other unreadable JSON is.
"""

import json
import math
import re
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

# Deeper documents have no use in the API, and each level costs a frame in every recursive check.
MAX_DEPTH = 64

_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_json(body: bytes) -> Any:
    """Parse a request body, raising JSONDecodeError for anything beyond standard, storable JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise json.JSONDecodeError("the body is not valid UTF-8", "", error.start) from None

    def reject_constant(name: str) -> Any:
        raise json.JSONDecodeError(f"{name} is not a JSON number", text, text.find(name))

    def finite_float(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise json.JSONDecodeError(f"{literal} is out of the range of a number", text, text.find(literal))
        return value

    def bounded_int(literal: str) -> int:
        try:
            return int(literal)
        except ValueError:
            # Python refuses to convert more than 4,300 digits.
            raise json.JSONDecodeError("an integer has too many digits", text, text.find(literal)) from None

    try:
        value = json.loads(text, parse_constant=reject_constant, parse_float=finite_float, parse_int=bounded_int)
    except RecursionError:
        raise json.JSONDecodeError(f"the body nests deeper than {MAX_DEPTH} levels", text, 0) from None
    _check_values(value, text)
    return value


def _check_values(document: Any, text: str) -> None:
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            _check_string(value, text)
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise json.JSONDecodeError(f"the body nests deeper than {MAX_DEPTH} levels", text, 0)
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _check_string(key, text)
                pending.append((item, depth + 1))


def _check_string(value: str, text: str) -> None:
    if _SURROGATE.search(value):
        raise json.JSONDecodeError("a string contains an unpaired surrogate escape such as \\ud800", text, 0)


class StrictJsonRequest(Request):
    """A request whose `json()` parses with `parse_json`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """An API route that reads its JSON body with `parse_json`."""

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))  # type: ignore[no-any-return]

        return strict_handler
