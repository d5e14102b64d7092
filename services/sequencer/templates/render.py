"""Render an email template for one contact: subject, HTML and text, with tracking added.

Typical use by the sender:

    rendered = render_email(template, recipient, links)

`template` was checked by `validate_template` when it was saved; rendering checks it again, so a
template stored before a rule was added cannot slip through.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateError, UndefinedError
from jinja2.sandbox import SecurityError

from services.sequencer.templates.environment import (
    HTML_ENVIRONMENT,
    MAX_OUTPUT_CHARS,
    TEXT_ENVIRONMENT,
    MissingTokenError,
    TokenGroup,
    render_budget,
)
from services.sequencer.templates.html_pass import read_html
from services.sequencer.templates.text import TextBuilder
from services.sequencer.templates.tracking import (
    LinkTags,
    TrackingLinks,
    edit_html,
    links_to,
    open_pixel,
    unsubscribe_footer,
)
from services.sequencer.templates.validation import TemplatePart, check_part, TemplateValidationError

MAX_SUBJECT_CHARS = 255


@dataclass(frozen=True)
class EmailTemplate:
    """A stored template: subject, HTML and an optional text part (derived from the HTML when None)."""

    subject: str
    html: str
    text: str | None = None


@dataclass(frozen=True)
class Recipient:
    """The contact a message is rendered for.

    `contact` contains the standard fields (email, first_name, last_name, ...) and `attributes` the typed
    attributes; templates see both as `contact.<name>`, a standard field winning over an attribute of
    the same name. `company` is seen as `company.<name>`.
    """

    contact: Mapping[str, Any]
    attributes: Mapping[str, Any] = field(default_factory=dict)
    company: Mapping[str, Any] = field(default_factory=dict)
    stage: str | None = None
    segment_ids: frozenset[str] = frozenset()
    interests: Sequence[str] = ()


@dataclass(frozen=True)
class RenderedEmail:
    """The parts of a rendered message, ready for `build_message`."""

    subject: str
    html: str
    text: str


class TemplateRenderError(ValueError):
    """Rendering failed for this contact; `part` is `subject`, `html` or `text`."""

    def __init__(self, part: TemplatePart, message: str) -> None:
        self.part = part
        super().__init__(f"{part}: {message}")


class TemplateSecurityError(TemplateRenderError):
    """A template tried to reach Python internals or exceed the sandbox's limits while rendering."""


def render_email(template: EmailTemplate, recipient: Recipient, links: TrackingLinks) -> RenderedEmail:
    """Render all parts for `recipient` and add click tracking, the open pixel and the unsubscribe link.

    The text part is rendered from `template.text`, or derived from the rendered HTML before its links
    are rewritten, so plain-text readers see the real URLs. Both parts always carry the unsubscribe URL.

    Raises:
        TemplateValidationError: the template fails the save-time checks.
        TemplateSecurityError: the sandbox stopped the template (injection attempt or runaway output).
        TemplateRenderError: any other rendering failure, e.g. a token that is empty for this contact.
    """
    _revalidate(template)
    unsubscribe_url = links.unsubscribe_url()
    context = template_context(recipient, unsubscribe_url)

    subject = _normalise_subject(_render("subject", template.subject, context))
    html = _render("html", template.html, context)

    # One pass over the HTML finds its links and, when the template has no text part, derives the text.
    found = LinkTags()
    if template.text is None:
        builder = TextBuilder()
        read_html(html, found, builder)
        text = builder.result()
    else:
        read_html(html, found)
        text = _render("text", template.text, context)

    tracked = _track_html(html, found, links, unsubscribe_url)
    return RenderedEmail(subject, tracked, _ensure_text_unsubscribe(text, unsubscribe_url))


def template_context(recipient: Recipient, unsubscribe_url: str) -> dict[str, Any]:
    """Build the template context: contact, company, unsubscribe_url and the block helpers."""
    contact_values = {**recipient.attributes, **recipient.contact}
    contact_values.setdefault("stage", recipient.stage)
    if not isinstance(contact_values.get("interests"), list):
        contact_values["interests"] = list(recipient.interests)
    interests = {interest.casefold() for interest in recipient.interests}

    return {
        "contact": TokenGroup("contact", contact_values),
        "company": TokenGroup("company", recipient.company),
        "unsubscribe_url": unsubscribe_url,
        "has_interest": _any_of(lambda name: str(name).casefold() in interests),
        "in_segment": _any_of(lambda segment_id: segment_id in recipient.segment_ids),
        "stage_in": _any_of(lambda stage: stage == recipient.stage),
    }


def _any_of(test: Callable[[Any], bool]) -> Callable[..., bool]:
    def helper(*values: Any) -> bool:
        return any(test(value) for value in values)

    return helper


def _revalidate(template: EmailTemplate) -> None:
    issues = []
    for part, source in (("subject", template.subject), ("html", template.html), ("text", template.text)):
        if source is not None:
            issues.extend(_cached_check(part, source))
    if issues:
        raise TemplateValidationError(issues)


@lru_cache(maxsize=512)
def _cached_check(part: TemplatePart, source: str) -> tuple[Any, ...]:
    return tuple(check_part(part, source))


@lru_cache(maxsize=512)
def _compile(part: TemplatePart, source: str) -> Template:
    environment = HTML_ENVIRONMENT if part == "html" else TEXT_ENVIRONMENT
    return environment.from_string(source)


def _render(part: TemplatePart, source: str, context: dict[str, Any]) -> str:
    try:
        chunks = _generate_within_limit(part, source, context)
    except TemplateRenderError:
        raise
    except SecurityError as error:
        raise TemplateSecurityError(part, f"blocked by the sandbox: {error}") from None
    except MissingTokenError as error:
        raise TemplateRenderError(part, str(error)) from None
    except UndefinedError as error:
        raise TemplateRenderError(part, f"undefined value: {error}") from None
    except RecursionError:
        raise TemplateSecurityError(part, "recursion is too deep") from None
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as error:
        raise TemplateRenderError(part, f"{type(error).__name__}: {error}") from None
    return "".join(chunks)


def _generate_within_limit(part: TemplatePart, source: str, context: dict[str, Any]) -> list[str]:
    # NOTE: the budget counts loops, calls, range(), repetition and padded or built text, and widths
    # and the strings that `+`, `~`, `%`, replace, join, format, string, tojson, pprint, macros and
    # blocks build are capped. Not capped yet: `sum(start=[])`, which can double a list, and
    # `indent` over text of many lines, which pads each line.
    chunks: list[str] = []
    size = 0
    with render_budget():
        for chunk in _compile(part, source).generate(context):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateSecurityError(part, f"output is longer than {MAX_OUTPUT_CHARS} characters")
            chunks.append(chunk)
    return chunks


def _normalise_subject(subject: str) -> str:
    # A line break in a header value would start a new header (header injection), so whitespace runs,
    # line breaks included, collapse to one space.
    subject = re.sub(r"\s+", " ", subject).strip()
    if not subject:
        raise TemplateRenderError("subject", "rendered subject is empty")
    if len(subject) > MAX_SUBJECT_CHARS:
        raise TemplateRenderError("subject", f"rendered subject is longer than {MAX_SUBJECT_CHARS} characters")
    return subject


def _track_html(html: str, found: LinkTags, links: TrackingLinks, unsubscribe_url: str) -> str:
    """Rewrite the links for click tracking, and put the footer and the open pixel before `</body>`.

    The footer's one link is the unsubscribe URL, which the rewrite would keep as it is.
    """
    tags = found.tags(html)
    insert = "" if links_to(tags, unsubscribe_url) else unsubscribe_footer(unsubscribe_url)
    if links.open_url is not None:
        insert += open_pixel(links.open_url())
    try:
        return edit_html(
            html, tags, links.click_url, keep=frozenset({unsubscribe_url}), insert=insert, insert_at=found.body_end(html)
        )
    except ValueError as error:
        raise TemplateRenderError("html", f"a link cannot be tracked: {error}") from None


def _ensure_text_unsubscribe(text: str, unsubscribe_url: str) -> str:
    if unsubscribe_url in text:
        return text
    return text.rstrip("\n") + f"\n\nUnsubscribe: {unsubscribe_url}\n"
