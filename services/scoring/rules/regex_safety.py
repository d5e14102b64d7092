"""A guard against regular expressions that backtrack exponentially.

`matches` conditions run Python's backtracking `re` engine over event properties such as page
URLs, which come from public tracking calls. A pattern with a repeat inside a repeat, such as
`(a+)+$`, can take exponential time on a crafted subject, so validation rejects it.

NOTE: this is a heuristic over the parsed pattern. It catches a variable-length repeat inside an
unbounded repeat, the common cause, but not every slow pattern: overlapping alternatives under one
repeat, such as `(a|ab)*c`, still pass. Subjects are also cut to MAX_SUBJECT_CHARS before matching.
"""

from __future__ import annotations

import importlib
from typing import Any

sre_parser: Any
sre_constants: Any
try:  # pragma: no cover - the import path is fixed for the supported Python 3.11 and 3.12
    sre_parser = importlib.import_module("re._parser")
    sre_constants = importlib.import_module("re._constants")
except ImportError:  # pragma: no cover - a later Python may move these private modules
    sre_parser = None
    sre_constants = None

MAX_PATTERN_CHARS = 500
MAX_SUBJECT_CHARS = 4096


def check_regex(pattern: str) -> None:
    """Raise ValueError when `pattern` is too long or nests a variable repeat in an unbounded one."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"regular expression is longer than {MAX_PATTERN_CHARS} characters")
    if sre_parser is None:  # pragma: no cover - see the import above
        return
    if _has_nested_repeat(sre_parser.parse(pattern), inside_repeat=False):
        raise ValueError(
            f"regular expression {pattern!r} repeats a group that itself repeats, which can take "
            "exponential time. Rewrite it without the nested repeat"
        )


def _has_nested_repeat(items: Any, *, inside_repeat: bool) -> bool:
    for opcode, argument in items:
        if _has_nested_repeat_in(opcode, argument, inside_repeat=inside_repeat):
            return True
    return False


def _has_nested_repeat_in(opcode: Any, argument: Any, *, inside_repeat: bool) -> bool:
    constants = sre_constants
    assert constants is not None
    repeats = {constants.MAX_REPEAT, constants.MIN_REPEAT}
    possessive = getattr(constants, "POSSESSIVE_REPEAT", None)
    if possessive is not None:
        repeats.add(possessive)

    if opcode in repeats:
        low, high, body = argument
        unbounded = high == constants.MAXREPEAT
        if inside_repeat and low != high:
            return True
        return _has_nested_repeat(body, inside_repeat=inside_repeat or unbounded)

    if opcode == constants.SUBPATTERN:
        return _has_nested_repeat(argument[-1], inside_repeat=inside_repeat)

    if opcode == constants.BRANCH:
        return any(_has_nested_repeat(branch, inside_repeat=inside_repeat) for branch in argument[1])

    if opcode in (constants.ASSERT, constants.ASSERT_NOT):
        return _has_nested_repeat(argument[1], inside_repeat=inside_repeat)

    return False
