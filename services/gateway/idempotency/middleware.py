"""ASGI middleware honouring the Idempotency-Key header on public POST requests.

A POST under /v1 (provider webhooks excepted) that carries `Idempotency-Key` and a valid API key
runs at most once per key and API key while the record lives (GATEWAY_IDEMPOTENCY_TTL_S):

- the first request claims the key, runs, and its 2xx response is stored;
- the same key with the same request replays that response, marked `Idempotent-Replayed: true`;
- the same key with a different method, path, query or body is a 422 naming the header;
- the same key while the first request still runs is a 409 with `Retry-After`.

Error responses are not stored: the key is released, so the client can retry the same request.
A request whose process died before it responded holds the key for GATEWAY_IDEMPOTENCY_LOCK_S;
after that a retry takes the key over and runs.
"""

import hashlib
import re
from datetime import timedelta

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.idempotency import service
from services.gateway.keys.auth import key_from_header
from services.kit.logging import get_logger
from services.kit.problems import Conflict, Problem, Unavailable, invalid, problem_response

log = get_logger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")
# Headers of the first response that a replay repeats. The others (dates, rate limits, correlation
# ids) belong to the request being served now.
_STORED_HEADERS = ("content-type", "location", "retry-after")
MAX_STORED_BODY_BYTES = 1024 * 1024


def applies_to(scope: Scope) -> bool:
    """Tell whether the request is a public POST that honours Idempotency-Key."""
    path: str = scope["path"]
    return scope["method"] == "POST" and path.startswith("/v1/") and not path.startswith("/v1/webhooks/")


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not applies_to(scope):
            await self.app(scope, receive, send)
            return
        idempotency_key = Headers(scope=scope).get(HEADER)
        if idempotency_key is None:
            await self.app(scope, receive, send)
            return

        request = Request(scope)
        try:
            api_key = await key_from_header(request)
        except (DBAPIError, PoolTimeoutError, OSError) as error:
            await _unavailable(scope, receive, send, error)
            return
        if api_key is None:
            # The route returns 401, and without a key there is no scope to remember the request in.
            await self.app(scope, receive, send)
            return
        if not _VALID_KEY.fullmatch(idempotency_key):
            problem = invalid(HEADER, "must be 1 to 255 visible ASCII characters, e.g. a UUID", "header")
            await problem_response(problem, request)(scope, receive, send)
            return

        try:
            body = await _read_body(receive)
        except ClientDisconnect:
            log.info("idempotency.client_disconnected", path=scope["path"])
            return
        await _run_once(self.app, scope, receive, send, api_key.id, idempotency_key, body)


async def _run_once(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, api_key_id: str, idempotency_key: str, body: bytes
) -> None:
    request = Request(scope)
    settings = request.app.state.settings
    policy = service.KeyPolicy(
        ttl=timedelta(seconds=settings.idempotency_ttl_s), lock=timedelta(seconds=settings.idempotency_lock_s)
    )
    try:
        outcome = await service.claim(
            request.app.state.db,
            api_key_id=api_key_id,
            idempotency_key=idempotency_key,
            fingerprint=_fingerprint(scope, body),
            policy=policy,
        )
    except (DBAPIError, PoolTimeoutError, OSError) as error:
        await _unavailable(scope, receive, send, error)
        return

    if isinstance(outcome, service.Claimed):
        await _run_and_store(app, scope, receive, send, outcome.record_id, body)
    elif isinstance(outcome, service.Replay):
        log.info("idempotency.replayed", api_key_id=api_key_id, status=outcome.status)
        await _send_replay(send, outcome)
    else:
        await problem_response(_refusal(outcome), request)(scope, receive, send)


def _refusal(outcome: service.ClaimResult) -> Problem:
    if isinstance(outcome, service.Mismatch):
        return invalid(
            HEADER,
            "was already used with a different request; send a new key for a new request",
            "idempotency_key_reused",
        )
    return Conflict(
        f"a request with this {HEADER} is still being processed; retry shortly",
        headers={"Retry-After": "1"},
    )


async def _run_and_store(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, record_id: int, body: bytes
) -> None:
    db = Request(scope).app.state.db
    status = 500
    headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def capturing_send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            raw = Headers(raw=message.get("headers", []))
            headers = {name: raw[name] for name in _STORED_HEADERS if name in raw}
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
        await send(message)

    try:
        await app(scope, _replaying_receive(body, receive), capturing_send)
    except BaseException:
        await service.release(db, record_id)
        raise

    content = b"".join(chunks)
    if 200 <= status < 300 and len(content) <= MAX_STORED_BODY_BYTES:
        await service.complete(db, record_id, status=status, headers=headers, body=content)
    else:
        await service.release(db, record_id)


async def _send_replay(send: Send, replay: service.Replay) -> None:
    headers = [(name.encode(), value.encode()) for name, value in replay.headers.items()]
    headers += [(REPLAYED_HEADER.lower().encode(), b"true"), (b"content-length", str(len(replay.body)).encode())]
    await send({"type": "http.response.start", "status": replay.status, "headers": headers})
    await send({"type": "http.response.body", "body": replay.body})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replaying_receive(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _fingerprint(scope: Scope, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b""), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


async def _unavailable(scope: Scope, receive: Receive, send: Send, error: Exception) -> None:
    log.warning("idempotency.database_unavailable", path=scope["path"], error=repr(error))
    problem = Unavailable("the gateway database cannot be reached; retry shortly")
    await problem_response(problem, Request(scope))(scope, receive, send)
