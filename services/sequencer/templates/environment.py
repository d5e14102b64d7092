"""The Jinja2 sandbox that renders email templates, and the values templates see.

Two `ImmutableSandboxedEnvironment`s share one configuration. The HTML one escapes every value it
prints, and the text one (for the text part and the subject) does not. The sandbox blocks attributes
that start with an underscore and any call that mutates a list, dict or set. This module also caps
repetition (`'x' * n`), powers and format widths, caps every string or list that `+`, `~`, the
`replace` and `join` filters, a macro or a block `{% set %}` builds at MAX_OUTPUT_CHARS, counts the
work of a render (see `render_budget`), and turns an empty contact or company token into
`MissingToken`, which raises when printed. The renderer caps the size of the output.
"""

from __future__ import annotations

import inspect
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import update_wrapper
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, Undefined, UndefinedError, nodes, pass_eval_context
from jinja2.filters import make_attrgetter
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, LoopContext, Macro, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError, safe_range
from jinja2.visitor import NodeTransformer
from markupsafe import soft_str

# A marketing email is far below 1 MB; a render that grows past this is runaway template code. No
# string or list that a template builds along the way may be longer either, because doubling one
# 35 times with `+` would take about 34 GB without ever reaching the output.
MAX_OUTPUT_CHARS = 1_000_000
MAX_EXPONENT = 100
# Loop iterations, calls, range() items, repeated items and padded or built text of one render, in
# all. Two nested loops over range(100000) pass the sandbox's cap per range(), yet make ten billion
# iterations.
MAX_RENDER_STEPS = 200_000
# A macro call renders a body, far more work than a loop step, so it counts as this many steps.
MACRO_CALL_STEPS = 10

# The widest padding, wrapping or format width a template may ask for. An email needs far less, and
# `'x'|center(300000000)` would build a 300 MB string even when nothing prints it.
MAX_FORMAT_WIDTH = 10_000
# The filters whose width argument sets the size of the string they build.
_WIDTH_FILTERS = {"center": "width", "indent": "width", "wordwrap": "width", "truncate": "length"}
_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[^a-zA-Z%]*")
_FORMAT_SPEC = re.compile(r"\{[^{}]*:([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_DIGITS = re.compile(r"\d+")

_steps: ContextVar[list[int] | None] = ContextVar("template_render_steps", default=None)


@contextmanager
def render_budget() -> Iterator[None]:
    """Count the steps of the renders inside the block against `MAX_RENDER_STEPS`."""
    token = _steps.set([0])
    try:
        yield
    finally:
        _steps.reset(token)


def _charge(steps: int) -> None:
    counter = _steps.get()
    if counter is None:
        return
    counter[0] += steps
    if counter[0] > MAX_RENDER_STEPS:
        raise SecurityError(
            f"the template needs more than {MAX_RENDER_STEPS} steps (loop iterations, calls, range() items, repeated"
            " items, built text); use fewer or smaller loops and macros"
        )


def check_built_size(size: int, operation: str, unit: str = "characters") -> None:
    """Raise SecurityError when `operation` would build a string or list longer than MAX_OUTPUT_CHARS."""
    if size > MAX_OUTPUT_CHARS:
        raise SecurityError(f"{operation} would create {size} {unit}, more than the maximum of {MAX_OUTPUT_CHARS}")


def _built(result: Any, operation: str) -> Any:
    """Check the size of what `operation` built, and count a hundredth of it against the render's budget.

    The check before an operation predicts the plain-text size, and autoescaping can make the result
    up to five times longer (`"` becomes `&#34;`), so the result is checked again here.
    """
    if isinstance(result, str | list | tuple):
        check_built_size(len(result), operation, "characters" if isinstance(result, str) else "items")
        _charge(len(result) // 100)
    return result


class MissingTokenError(UndefinedError):
    """A template printed a contact or company token that is empty for this contact."""


class MissingToken(ChainableUndefined):
    """An empty or absent token, e.g. `contact.first_name` for a contact without a first name.

    It is false in `{% if %}`, replaced by the `fallback` and `default` filters, and raises
    `MissingTokenError` when printed, so a template can never send "Hi ,". Attribute access on it
    returns itself, so `{% if company.address.city %}` works when the address is missing.
    """

    __slots__ = ()

    def __init__(self, token: str) -> None:
        super().__init__(
            hint=f"{token} is empty for this contact; print it as {{{{ {token} | fallback('...') }}}} "
            f"or inside {{% if {token} %}}",
            name=token,
            exc=MissingTokenError,
        )

    __str__ = Undefined._fail_with_undefined_error  # type: ignore[assignment]
    __html__ = Undefined._fail_with_undefined_error


def is_blank(value: Any) -> bool:
    """Return whether a token value counts as missing: undefined, None, or empty or blank text."""
    if isinstance(value, Undefined) or value is None:
        return True
    return isinstance(value, str) and not value.strip()


class TokenGroup:
    """Read-only view of a contact's or company's values for templates (`contact.first_name`).

    Nested mappings become nested groups; blank values become `MissingToken`. Names that start with
    an underscore are never looked up, so the sandbox's own checks handle them.
    """

    __slots__ = ("_name", "_values")

    def __init__(self, name: str, values: Mapping[str, Any]) -> None:
        self._name = name
        self._values = values

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        return self._lookup(key)

    def __getitem__(self, key: object) -> Any:
        if not isinstance(key, str) or key.startswith("_"):
            raise KeyError(key)
        return self._lookup(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and not is_blank(self._values.get(key))

    def __iter__(self) -> Iterator[str]:
        return iter([key for key, value in self._values.items() if not is_blank(value)])

    def __bool__(self) -> bool:
        return any(not is_blank(value) for value in self._values.values())

    def __repr__(self) -> str:
        return f"<TokenGroup {self._name}>"

    def _lookup(self, key: str) -> Any:
        token = f"{self._name}.{key}"
        value = self._values.get(key)
        if is_blank(value):
            return MissingToken(token)
        if isinstance(value, Mapping):
            return TokenGroup(token, value)
        return value


def fallback(value: Any, default: str = "") -> Any:
    """Jinja filter: `value`, or `default` when the value is missing, None or blank text.

    `{{ contact.first_name | fallback('there') }}` prints "there" for a contact without a first name.
    """
    return default if is_blank(value) else value


def _finalize(value: Any) -> Any:
    # Jinja prints None as "None"; a value computed in the template that ends up None prints nothing.
    return "" if value is None else value


class _ConcatAsCall(NodeTransformer):
    """Turn each `a ~ b ~ c` into a call of `EmailSandbox.concat_operands`."""

    def visit_Concat(self, node: nodes.Concat) -> nodes.Call:  # noqa: N802 - the visitor's naming scheme
        operands = [self.visit(operand) for operand in node.nodes]
        return nodes.Call(nodes.EnvironmentAttribute("concat_operands"), operands, [], None, None, lineno=node.lineno)


class EmailSandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox with limits on repetition and powers, which raises on any unsafe access."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        # Every loop's iterable goes through `counted`. The call names an attribute of the
        # environment, which no template variable can shadow.
        template = super()._parse(source, name, filename)
        for loop in template.find_all(nodes.For):
            loop.iter = nodes.Call(nodes.EnvironmentAttribute("counted"), [loop.iter], [], None, None, lineno=loop.lineno)
        return template

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None, defer_init: bool = False) -> str:
        # Jinja compiles `~` to a plain join, and its optimizer joins constant operands at compile
        # time, so no size check would run. A call is never folded, so every `~` is checked when it
        # runs. The rewrite happens here, after `_parse`, because save-time validation reads `~`.
        source = _ConcatAsCall().visit(source)
        return super()._generate(source, name, filename, defer_init=defer_init)

    @pass_eval_context
    def concat_operands(self, eval_ctx: EvalContext, *operands: Any) -> str:
        """Join the operands of one `a ~ b ~ c` as Jinja does, unless the result would be too long."""
        # soft_str keeps Markup, so markup_join still escapes the other operands next to it.
        pieces = [soft_str(operand) for operand in operands]
        check_built_size(sum(len(piece) for piece in pieces), "'~'")
        joined = markup_join(pieces) if eval_ctx.autoescape else str_join(pieces)
        return _built(joined, "'~'")

    def concat(self, chunks: Iterable[str]) -> str:
        """Join the output of a macro, a call or filter block or a block `{% set %}`, unless it is too long.

        Jinja's generated code joins every captured block with this method, so a macro that prints its
        argument twice cannot double a string past the limit.
        """
        pieces = list(chunks)
        check_built_size(sum(len(piece) for piece in pieces), "a macro or block")
        return _built("".join(pieces), "a macro or block")

    def counted(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """Yield the items of a loop, counting each one against the render's budget."""
        for item in iterable:
            _charge(1)
            yield item

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        # Each call counts, so a macro that calls itself twice per level runs out of budget. A
        # recursive loop's `loop(items)` gets its items counted like any loop's.
        _charge(MACRO_CALL_STEPS if isinstance(__obj, Macro) else 1)
        if isinstance(__obj, LoopContext) and args:
            args = (__self.counted(args[0]), *args[1:])
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        format_string = value.__self__
        check_format_widths(format_string)

        def checked(*args: Any, **kwargs: Any) -> Any:
            check_format_size(format_string, (*args, *kwargs.values()))
            return wrapped(*args, **kwargs)

        return checked

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        # The stock sandbox returns an undefined value that prints as "", which hides an injection
        # attempt; raising stops the render and names the attribute.
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__} value is not allowed")

    def call_binop(self, context: Context, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "+":
            return _add(left, right)

        if operator_name == "%":
            if isinstance(left, str):
                check_format_widths(left)
                check_format_size(left, right)
            return operator.mod(left, right)

        if operator_name == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
            return operator.pow(left, right)

        for sequence, count in ((left, right), (right, left)):
            if isinstance(sequence, str | list | tuple) and isinstance(count, int):
                if len(sequence) * count > MAX_OUTPUT_CHARS:
                    raise SecurityError(f"repetition would create more than {MAX_OUTPUT_CHARS} items")
                _charge(max(0, len(sequence) * count))
        return operator.mul(left, right)


def _add(left: Any, right: Any) -> Any:
    sequences = str | list | tuple
    if isinstance(left, sequences) and isinstance(right, sequences):
        check_built_size(len(left) + len(right), "'+'", "characters" if isinstance(left, str) else "items")
    return _built(operator.add(left, right), "'+'")


def check_format_widths(format_string: str) -> None:
    """Reject a %-style or str.format string whose width or precision would build a huge string."""
    specs = [match.group() for match in _PRINTF_SPEC.finditer(format_string)]
    specs += [match.group(1) for match in _FORMAT_SPEC.finditer(format_string)]
    for spec in specs:
        if "*" in spec or "{" in spec:
            raise SecurityError("a width or precision taken from an argument is not allowed in a format string; write the number")
        for number in _DIGITS.findall(spec):
            if int(number) > MAX_FORMAT_WIDTH:
                raise SecurityError(
                    f"a width or precision of {number} in a format string is larger than the maximum, {MAX_FORMAT_WIDTH}"
                )


def check_format_size(format_string: str, arguments: Any) -> None:
    """Reject formatting whose result could be longer than MAX_OUTPUT_CHARS, before it is built.

    Each field of the format string may print the longest argument, padded to its width, because a
    mapping lets `'%(a)s' * 30000` print one value thirty thousand times.
    """
    if isinstance(arguments, Mapping):
        values = list(arguments.values())
    elif isinstance(arguments, tuple | list):
        values = list(arguments)
    else:
        values = [arguments]
    longest = max((text_size(value) for value in values), default=0)

    fields = [match.group() for match in _PRINTF_SPEC.finditer(format_string)]
    fields += re.findall(r"\{[^{}]*\}", format_string)
    widths = sum(max((int(number) for number in _DIGITS.findall(field)), default=0) for field in fields)
    check_built_size(len(format_string) + len(fields) * longest + widths, "a format string")


def text_size(value: Any, limit: int = MAX_OUTPUT_CHARS) -> int:
    """Return about how many characters `str(value)` has, stopping early once past `limit`.

    Only strings and containers are measured, without building their text, because `str()` of a
    list that repeats a long string would itself allocate what the caps are there to prevent.
    """
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        items: Any = (part for pair in value.items() for part in pair)
    elif isinstance(value, list | tuple | set | frozenset):
        items = iter(value)
    else:
        return len(str(value)) if isinstance(value, int | float | bool) or value is None else 0
    total = 2
    for item in items:
        total += text_size(item, limit - total) + 4
        if total > limit:
            break
    return total


def _text_checked(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter that turns a value into text: reject a value whose text would pass MAX_OUTPUT_CHARS."""

    # `tojson` takes the evaluation context first, so the value is the argument after it.
    value_position = 1 if getattr(original, "jinja_pass_arg", None) is not None else 0

    def checked(*args: Any, **kwargs: Any) -> Any:
        if len(args) > value_position:
            check_built_size(text_size(args[value_position]), name)
        return original(*args, **kwargs)

    return update_wrapper(checked, original)


def _width_checked(name: str, original: Callable[..., Any], width_argument: str) -> Callable[..., Any]:
    """Wrap a filter that pads or wraps text: reject a width above MAX_FORMAT_WIDTH before it runs, and
    count a hundredth of the text it builds against the render's budget.
    """
    names = list(inspect.signature(original).parameters)
    position = names.index(width_argument)

    def checked(*args: Any, **kwargs: Any) -> Any:
        width = kwargs.get(width_argument, args[position] if len(args) > position else None)
        if isinstance(width, int | float) and abs(width) > MAX_FORMAT_WIDTH:
            raise SecurityError(f"{name}: a width of {width} is larger than the maximum, {MAX_FORMAT_WIDTH}")
        result = original(*args, **kwargs)
        _charge(len(result) // 100 if isinstance(result, str) else 1)
        return result

    return update_wrapper(checked, original)


def _format_checked(original: Callable[..., Any]) -> Callable[..., Any]:
    def checked(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            check_format_widths(value)
            check_format_size(value, kwargs or args)
        return original(value, *args, **kwargs)

    return update_wrapper(checked, original)


def _replace_checked(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap the `replace` filter: reject a replacement that would build a string longer than MAX_OUTPUT_CHARS."""

    @pass_eval_context
    def checked(eval_ctx: EvalContext, value: Any, old: Any, new: Any, count: int | None = None) -> Any:
        subject, old_text, new_text = str(value), str(old), str(new)
        replaced = subject.count(old_text)
        if count is not None and count >= 0:
            replaced = min(replaced, count)
        check_built_size(len(subject) + replaced * (len(new_text) - len(old_text)), "replace")
        return _built(original(eval_ctx, value, old, new, count), "replace")

    return update_wrapper(checked, original)


def _join_checked(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap the `join` filter: reject a join that would build a string longer than MAX_OUTPUT_CHARS."""

    @pass_eval_context
    def checked(eval_ctx: EvalContext, value: Any, d: Any = "", attribute: str | int | None = None) -> Any:
        if attribute is not None:
            value = map(make_attrgetter(eval_ctx.environment, attribute), value)
        items = list(value)
        separators = len(str(d)) * max(len(items) - 1, 0)
        check_built_size(separators + sum(len(str(item)) for item in items), "join")
        return _built(original(eval_ctx, items, d), "join")

    return update_wrapper(checked, original)


def counted_range(*args: int) -> range:
    """Return the sandbox's capped range(), counting its items against the render's budget."""
    items = safe_range(*args)
    _charge(len(items))
    return items


def _make_environment(*, autoescape: bool) -> EmailSandbox:
    environment = EmailSandbox(
        autoescape=autoescape,
        finalize=_finalize,
        keep_trailing_newline=True,
        undefined=StrictUndefined,
    )
    environment.filters["fallback"] = fallback
    for name, width_argument in _WIDTH_FILTERS.items():
        environment.filters[name] = _width_checked(name, environment.filters[name], width_argument)
    environment.filters["format"] = _format_checked(environment.filters["format"])
    environment.filters["replace"] = _replace_checked(environment.filters["replace"])
    environment.filters["join"] = _join_checked(environment.filters["join"])
    for name in ("string", "tojson", "pprint"):
        environment.filters[name] = _text_checked(name, environment.filters[name])
    environment.globals["range"] = counted_range
    return environment


HTML_ENVIRONMENT = _make_environment(autoescape=True)
TEXT_ENVIRONMENT = _make_environment(autoescape=False)
