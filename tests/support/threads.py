"""Running blocking code that calls `asyncio.run` away from the test session's event loop.

`asyncio.run` clears the current event loop of the thread it runs in when it finishes, which would
leave the session-wide loop of pytest-asyncio unset for the tests after it.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def in_thread(function: Callable[[], T]) -> T:
    """Call `function` on a separate thread and return its result (or raise its exception)."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(function).result()
