"""Regular expressions of `matches` conditions, compiled and searched with RE2.

Patterns come from rule authors and subjects from public tracking calls (page URLs, form fields).
Python's `re` backtracks, so a pattern such as `(a|aa)*$` takes exponential time on a crafted
subject, and it holds the GIL while it runs, which stalls every thread of the process. RE2
(google-re2) runs in time linear in the subject's length, so no pattern can do that. RE2 has no
lookaround, backreferences or possessive repeats, and validation rejects patterns that use them.

Search time also grows with the size of the compiled program, so validation caps it as well, and
only the first MAX_SUBJECT_CHARS characters of a value are searched.
"""

from __future__ import annotations

import re
from typing import Protocol

import re2  # type: ignore[import-untyped]

MAX_PATTERN_CHARS = 500
MAX_SUBJECT_CHARS = 4096
# RE2 instructions of one compiled pattern. `^(chief|head|vp|director)\b` compiles to a few dozen and
# `.{1000}z` to about 8,000, and a search over a long subject costs roughly in proportion.
MAX_PROGRAM_SIZE = 2000
# RE2's memory budget per pattern: the program plus the DFA states it caches between searches. With
# the default of 8 MiB, a rule set with a few hundred patterns could hold several GB at worst. A
# search whose DFA outgrows this budget falls back to RE2's NFA, which is slower but still linear.
PATTERN_MAX_MEMORY = 1 << 20

# Shown when Python's `re` accepts a pattern that RE2 rejects, as rule sets written for `re` may.
_RE2_SYNTAX_HINT = (
    "Patterns use RE2 syntax, which has no lookahead, lookbehind, backreferences or possessive "
    "repeats, and writes the end of the text as \\z instead of \\Z"
)


class CompiledPattern(Protocol):
    """The part of a compiled `re2` pattern that rule evaluation uses."""

    def search(self, text: bytes) -> object | None: ...


def compile_pattern(pattern: str, *, case_sensitive: bool) -> CompiledPattern:
    """Compile a `matches` pattern with RE2, raising ValueError with a message for the rule author."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"regular expression is longer than {MAX_PATTERN_CHARS} characters")

    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.max_mem = PATTERN_MAX_MEMORY
    # The error goes back to the author in the ValueError, so RE2 need not print it to stderr.
    options.log_errors = False
    try:
        # Patterns and subjects are both encoded here, the same way, so a lone surrogate (which
        # JSON allows) reaches RE2 as bytes instead of raising UnicodeEncodeError.
        compiled = re2.compile(_utf8(pattern), options)
    except re2.error as error:
        raise ValueError(_compile_error_message(pattern, error)) from None

    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise ValueError(
            f"regular expression {pattern!r} compiles to {compiled.programsize} instructions, more "
            f"than the maximum of {MAX_PROGRAM_SIZE}. Use fewer or smaller counted repeats, such as "
            "{1,50} in place of {1,1000}"
        )
    return compiled


def search(pattern: CompiledPattern, value: str) -> bool:
    """Tell whether `pattern` occurs in the first MAX_SUBJECT_CHARS characters of `value`."""
    return pattern.search(_utf8(value[:MAX_SUBJECT_CHARS])) is not None


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _compile_error_message(pattern: str, error: re2.error) -> str:
    reason = error.args[0] if error.args else "cannot be compiled"
    if isinstance(reason, bytes):
        reason = reason.decode("utf-8", "replace")
    message = f"invalid regular expression {pattern!r}: {reason}"
    if _python_accepts(pattern):
        message += f". {_RE2_SYNTAX_HINT}"
    return message


def _python_accepts(pattern: str) -> bool:
    # Only matching backtracks, so compiling an untrusted pattern with `re` is safe.
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True
