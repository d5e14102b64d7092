"""Add tracking to rendered HTML: click-tracking links, the open pixel and the unsubscribe link.

Links are found with `html.parser`, so an `href` inside a comment, a script or an attribute value is
never touched, and each tag is edited in place so the rest of the markup stays byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

from services.sequencer.templates.html_pass import Attributes, Position, read_html

_TRACKED_TAGS = frozenset({"a", "area"})
# One attribute of a start tag: leading space, name, and optional value in any of the three quotings.
_ATTRIBUTE = re.compile(r"""(\s+)([^\s"'>/=]+)(?:(\s*=\s*)("[^"]*"|'[^']*'|[^\s"'=<>`]+))?""")
_HTTP = re.compile(r"(?i)^https?://")
_NEWLINE = re.compile("\n")
# Marks a link the author wants left as it is (e.g. "view in browser"); removed from the output.
NO_TRACK_ATTRIBUTE = "data-no-track"


@dataclass(frozen=True)
class TrackingLinks:
    """Functions that build the tracking URLs of one message.

    `click_url(url)` returns the redirect URL for a link; `open_url()` the open pixel's URL;
    `unsubscribe_url()` the unsubscribe page, which also takes the RFC 8058 one-click POST.
    Leave `click_url` or `open_url` as None to skip that kind of tracking (e.g. in a preview).
    """

    unsubscribe_url: Callable[[], str]
    click_url: Callable[[str], str] | None = None
    open_url: Callable[[], str] | None = None


@dataclass(frozen=True)
class LinkTag:
    start: int
    raw: str
    href: str | None
    no_track: bool


class LinkTags:
    """A listener to a pass over the HTML that keeps its `<a>` and `<area>` tags and its `</body>` tag."""

    def __init__(self) -> None:
        self._found: list[tuple[int, int, str, dict[str, str | None]]] = []
        self._body_end: tuple[int, int] | None = None

    def start_tag(self, tag: str, attrs: Attributes, position: Position) -> None:
        if tag in _TRACKED_TAGS:
            line, column = position.getpos()
            self._found.append((line, column, position.get_starttag_text() or "", dict(attrs)))

    def end_tag(self, tag: str, position: Position) -> None:
        # Only a `</body>` the parser reads as a tag counts: one inside a comment, a script or an
        # attribute value is text, and a footer put before it would be hidden from the recipient.
        if tag == "body":
            self._body_end = position.getpos()

    def text(self, data: str) -> None:
        pass

    def tags(self, html: str) -> list[LinkTag]:
        """Return the tags found in `html`, the text of the pass, with their offsets into it."""
        line_starts = _line_starts(html)
        return [
            LinkTag(line_starts[line - 1] + column, raw, attrs.get("href"), NO_TRACK_ATTRIBUTE in attrs)
            for line, column, raw, attrs in self._found
        ]

    def body_end(self, html: str) -> int | None:
        """Return the offset in `html` of its last `</body>` tag, or None when it has none."""
        if self._body_end is None:
            return None
        line, column = self._body_end
        return _line_starts(html)[line - 1] + column


def _line_starts(html: str) -> list[int]:
    # html.parser counts lines by "\n" alone, as this does.
    return [0, *(match.end() for match in _NEWLINE.finditer(html))]


def _find_link_tags(html: str) -> list[LinkTag]:
    found = LinkTags()
    read_html(html, found)
    return found.tags(html)


def rewrite_links(html: str, click_url: Callable[[str], str], *, keep: frozenset[str] = frozenset()) -> str:
    """Replace every http(s) `href` of `<a>` and `<area>` with `click_url(href)`.

    Links in `keep` (the unsubscribe URL) and links with `data-no-track` keep their URL; the marker
    attribute itself is removed. mailto:, tel: and fragment links are left alone.
    """
    return edit_html(html, _find_link_tags(html), click_url, keep=keep)


def edit_html(
    html: str,
    tags: list[LinkTag],
    click_url: Callable[[str], str] | None,
    *,
    keep: frozenset[str] = frozenset(),
    insert: str = "",
    insert_at: int | None = None,
) -> str:
    """Rewrite the links of `tags`, found by a pass over `html`, and insert `insert` at `insert_at`.

    The links are rewritten as `rewrite_links` does, unless `click_url` is None. `insert` goes at
    the end when `insert_at` is None.
    """
    edits: list[tuple[int, int, str]] = []
    if click_url is not None:
        for tag in tags:
            if html[tag.start : tag.start + len(tag.raw)] != tag.raw:
                raise AssertionError("link offsets from html.parser no longer match the source")
            edits.append((tag.start, len(tag.raw), _rewrite_tag(tag, click_url, keep)))
    if insert:
        edits.append((len(html) if insert_at is None else insert_at, 0, insert))
    edits.sort(key=lambda edit: edit[0])

    pieces: list[str] = []
    position = 0
    for start, length, replacement in edits:
        pieces.append(html[position:start])
        pieces.append(replacement)
        position = start + length
    pieces.append(html[position:])
    return "".join(pieces)


def _rewrite_tag(tag: LinkTag, click_url: Callable[[str], str], keep: frozenset[str]) -> str:
    if tag.no_track:
        return _edit_attribute(tag.raw, NO_TRACK_ATTRIBUTE, None)

    href = (tag.href or "").strip()
    if not _HTTP.match(href) or href in keep:
        return tag.raw
    return _edit_attribute(tag.raw, "href", click_url(href))


def _edit_attribute(raw_tag: str, name: str, value: str | None) -> str:
    """Set the first attribute called `name` to `value`, or remove it when `value` is None."""
    name_end = re.match(r"<[^\s/>]+", raw_tag)
    position = name_end.end() if name_end else 0
    for match in _ATTRIBUTE.finditer(raw_tag, position):
        if match.start() != position:
            break
        position = match.end()
        if match.group(2).lower() != name:
            continue
        if value is None:
            return raw_tag[: match.start()] + raw_tag[match.end() :]
        replacement = f'{match.group(1)}{match.group(2)}="{escape(value, quote=True)}"'
        return raw_tag[: match.start()] + replacement + raw_tag[match.end() :]
    return raw_tag


def open_pixel(url: str) -> str:
    """Return the 1x1 image tag that records an open."""
    return (
        f'<img src="{escape(url, quote=True)}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0" />'
    )


def unsubscribe_footer(url: str) -> str:
    """Return the HTML footer with the unsubscribe link, for templates that do not place one."""
    return (
        '<p style="font-size:12px;color:#666666">'
        f'<a href="{escape(url, quote=True)}">Unsubscribe</a> from these emails.</p>'
    )


def links_to(tags: list[LinkTag], url: str) -> bool:
    """Return whether one of the tags a pass found points exactly at `url`."""
    return any((tag.href or "").strip() == url for tag in tags)
