"""The request body size limit, counted on the bytes that arrive.

A `Content-Length` above the limit is rejected before any byte is read. Because that header can be
missing (chunked transfer) or wrong, the middleware also counts the body as the application reads
it. Once the count passes the limit, reading raises `BodyTooLarge` and whatever response the
application starts is replaced by the 413 problem.
"""

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.kit.logging import get_logger
from services.kit.problems import PayloadTooLarge, problem_response

log = get_logger(__name__)

LimitForPath = Callable[[str], int]


class BodyTooLarge(PayloadTooLarge):
    """The request body passed the limit of its path."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body exceeds the limit of {limit} bytes", max_bytes=limit)


class BodySizeLimit:
    """ASGI middleware that returns 413 for a body larger than the limit of its path."""

    def __init__(self, app: ASGIApp, *, limit_for_path: LimitForPath) -> None:
        self.app = app
        self.limit_for_path = limit_for_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        limit = self.limit_for_path(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            log.info("request.body_too_large", path=scope["path"], declared=declared, limit=limit)
            await _send_problem(scope, receive, send, limit)
            return

        counter = _CountingReceive(receive, limit)
        response_started = False

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if counter.exceeded:
                # The application responded after the body overflowed (often a 400 for a body it
                # could not read), and the caller must see the 413 instead.
                if not response_started:
                    response_started = True
                    await _send_problem(scope, receive, send, limit)
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counter, guarded_send)
        except BodyTooLarge:
            if response_started:
                raise
            await _send_problem(scope, receive, send, limit)


class _CountingReceive:
    def __init__(self, receive: Receive, limit: int) -> None:
        self.receive = receive
        self.limit = limit
        self.received = 0
        self.exceeded = False

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.exceeded = True
                log.info("request.body_too_large", received=self.received, limit=self.limit)
                raise BodyTooLarge(self.limit)
        return message


def _declared_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


async def _send_problem(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = problem_response(BodyTooLarge(limit), Request(scope))
    response.headers["Connection"] = "close"
    await response(scope, receive, send)
