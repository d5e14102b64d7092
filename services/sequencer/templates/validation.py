"""Check a template when it is saved: syntax, allowed names and constructs, and token defaults.

Each problem names the part it is in (`subject`, `html` or `text`) and its line, so the API can
report it next to the field. Rendering runs the same checks again, and the sandbox guards what a
static check cannot see (names built at run time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from jinja2 import TemplateSyntaxError, meta, nodes

from services.sequencer.templates.environment import HTML_ENVIRONMENT, TEXT_ENVIRONMENT

TemplatePart = Literal["subject", "html", "text"]

MAX_SOURCE_CHARS = {"subject": 1_000, "html": 500_000, "text": 200_000}

# Names a template may read. Everything else (config, request, self, os, lipsum, cycler, ...) is a
# known route out of a template sandbox, or simply undefined here.
ALLOWED_NAMES = frozenset(
    {"contact", "company", "unsubscribe_url", "has_interest", "in_segment", "stage_in", "range", "dict", "namespace"}
)
# Attribute names used to climb from a value to Python internals, blocked even without an underscore.
BLOCKED_ATTRIBUTES = frozenset(
    {"mro", "format", "format_map", "func_globals", "f_globals", "f_locals", "f_back", "gi_frame", "gi_code",
     "cr_frame", "tb_frame", "im_func", "func_code", "globals", "builtins", "subclasses", "environment", "config"}
)
# Tokens always present for a contact (interests is a list, possibly empty), so they may print
# without a fallback.
ALWAYS_PRESENT = frozenset({"contact.email", "contact.interests"})
_TOKEN_ROOTS = ("contact", "company")
_DEFAULT_FILTERS = frozenset({"fallback", "default", "d"})


@dataclass(frozen=True)
class TemplateIssue:
    """One problem in a template part."""

    part: TemplatePart
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.part}, line {self.line}" if self.line else self.part
        return f"{where}: {self.message}"


class TemplateValidationError(ValueError):
    """A template is invalid or unsafe; `issues` lists each problem with its part and line."""

    def __init__(self, issues: list[TemplateIssue]) -> None:
        self.issues = issues
        super().__init__("invalid template: " + "; ".join(str(issue) for issue in issues))


def validate_template(subject: str, html: str, text: str | None = None) -> None:
    """Raise TemplateValidationError unless every part parses and uses only safe constructs.

    Also rejects a contact or company token printed without `fallback`/`default` or an `{% if %}` guard,
    because an empty value would print as "Hi ,".
    """
    issues: list[TemplateIssue] = []
    parts: list[tuple[TemplatePart, str | None]] = [("subject", subject), ("html", html), ("text", text)]
    for part, source in parts:
        if source is not None:
            issues.extend(check_part(part, source))
    if issues:
        raise TemplateValidationError(issues)


def check_part(part: TemplatePart, source: str) -> list[TemplateIssue]:
    """Return the problems in one part's source."""
    if len(source) > MAX_SOURCE_CHARS[part]:
        return [TemplateIssue(part, None, f"is longer than {MAX_SOURCE_CHARS[part]} characters")]
    if part == "subject" and not source.strip():
        return [TemplateIssue(part, None, "must not be empty")]

    environment = HTML_ENVIRONMENT if part == "html" else TEXT_ENVIRONMENT
    try:
        tree = environment.parse(source)
    except TemplateSyntaxError as error:
        return [TemplateIssue(part, error.lineno, f"syntax error: {error.message}")]

    issues = [TemplateIssue(part, line, message) for line, message in _unsafe_constructs(tree)]
    for name in sorted(meta.find_undeclared_variables(tree) - ALLOWED_NAMES):
        issues.append(TemplateIssue(part, _first_line_of_name(tree, name), f"unknown name {name!r}; templates may use "
                                    + ", ".join(sorted(ALLOWED_NAMES))))
    issues.extend(TemplateIssue(part, line, message) for line, message in _unguarded_tokens(tree.body, frozenset()))
    return issues


def _unsafe_constructs(tree: nodes.Template) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name, nodes.Extends, nodes.Include,
                               nodes.Import, nodes.FromImport)):
        message = _unsafe_message(node)
        if message:
            found.append((node.lineno, message))
    return found


def _unsafe_message(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Extends | nodes.Include | nodes.Import | nodes.FromImport):
        return f"{{% {type(node).__name__.lower()} %}} is not allowed; a template is one self-contained document"
    if isinstance(node, nodes.Name) and node.name == "self":
        return "'self' is not allowed"

    name: object = None
    if isinstance(node, nodes.Getattr):
        name = node.attr
    elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        name = node.arg.value
    if isinstance(name, str) and (name.startswith("_") or name in BLOCKED_ATTRIBUTES):
        return f"access to {name!r} is not allowed"
    return None


def _first_line_of_name(tree: nodes.Template, name: str) -> int | None:
    for node in tree.find_all(nodes.Name):
        if node.name == name:
            return node.lineno
    return None


def _unguarded_tokens(body: list[nodes.Node], guarded: frozenset[str]) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in body:
        if isinstance(node, nodes.If):
            found.extend(_unguarded_in_if(node, guarded))
        elif isinstance(node, nodes.Output):
            for expression in node.nodes:
                found.extend(_bare_tokens(expression, guarded))
        else:
            for child in node.iter_child_nodes():
                found.extend(_unguarded_tokens([child], guarded))
    return found


def _unguarded_in_if(node: nodes.If, guarded: frozenset[str]) -> list[tuple[int, str]]:
    # `{% if contact.x %}` guards its body; `{% if not contact.x %}` guards its else part.
    negated = isinstance(node.test, nodes.Not)
    tested = frozenset(_token_paths(node.test))
    body_guard = guarded if negated else guarded | tested
    else_guard = guarded | tested if negated else guarded

    found = _unguarded_tokens(node.body, body_guard)
    for branch in node.elif_:
        found.extend(_unguarded_in_if(branch, guarded))
    found.extend(_unguarded_tokens(node.else_, else_guard))
    return found


def _bare_tokens(expression: nodes.Node, guarded: frozenset[str]) -> list[tuple[int, str]]:
    if isinstance(expression, nodes.Filter):
        if expression.name in _DEFAULT_FILTERS:
            return []
        return _bare_tokens(expression.node, guarded) if expression.node is not None else []
    if isinstance(expression, nodes.Concat):
        return [issue for item in expression.nodes for issue in _bare_tokens(item, guarded)]

    path = _token_path(expression)
    if path is None or path in guarded or path in ALWAYS_PRESENT:
        return []
    return [(expression.lineno, f"{{{{ {path} }}}} may be empty for some contacts: write "
             f"{{{{ {path} | fallback('...') }}}} or guard it with {{% if {path} %}}")]


def _token_paths(expression: nodes.Node) -> list[str]:
    candidates = [expression, *expression.find_all(nodes.Getattr)]
    paths = [_token_path(node) for node in candidates if isinstance(node, nodes.Getattr)]
    return [path for path in paths if path is not None]


def _token_path(expression: nodes.Node) -> str | None:
    parts: list[str] = []
    current = expression
    while isinstance(current, nodes.Getattr):
        parts.append(current.attr)
        current = current.node
    if not parts or not isinstance(current, nodes.Name) or current.name not in _TOKEN_ROOTS:
        return None
    return ".".join([current.name, *reversed(parts)])
