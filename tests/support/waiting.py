"""Waiting for asynchronous work (queues, other processes) without fixed sleeps."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T]], *, timeout_s: float = 20.0, interval_s: float = 0.1) -> T:
    """Await `check` until it returns a truthy value or raises no AssertionError; fail after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = await check()
            if result:
                return result
            last: Any = result
        except AssertionError as error:
            last = error
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s; last result: {last!r}")
        await asyncio.sleep(interval_s)
