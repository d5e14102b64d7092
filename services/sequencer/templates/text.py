"""Derive a plain-text part from rendered HTML, for templates saved without one."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK_TAGS = frozenset(
    {"p", "div", "section", "article", "header", "footer", "table", "tr", "ul", "ol", "blockquote", "pre",
     "h1", "h2", "h3", "h4", "h5", "h6", "center"}
)
_SKIPPED_TAGS = frozenset({"head", "style", "script", "title", "template", "noscript"})


class _TextBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip_depth = 0
        self._links: list[tuple[str | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip_depth += 1
        elif tag in _BLOCK_TAGS:
            self.chunks.append("\n\n")
        elif tag == "br":
            self.chunks.append("\n")
        elif tag == "li":
            self.chunks.append("\n- ")
        elif tag == "td":
            self.chunks.append(" ")
        elif tag == "hr":
            self.chunks.append("\n\n----\n\n")
        elif tag == "a":
            self._links.append((dict(attrs).get("href"), len(self.chunks)))

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.chunks.append("\n\n")
        elif tag == "a" and self._links:
            self._close_link()

    def handle_data(self, data: str) -> None:
        if self._skip_depth == 0:
            self.chunks.append(re.sub(r"\s+", " ", data))

    def _close_link(self) -> None:
        href, start = self._links.pop()
        if not href or not re.match(r"(?i)https?:|mailto:", href.strip()):
            return
        label = "".join(self.chunks[start:]).strip()
        href = href.strip()
        if label != href:
            self.chunks.append(f" ({href})" if label else href)


def html_to_text(html: str) -> str:
    """Return readable plain text for `html`: block elements become paragraphs, links show their URL."""
    builder = _TextBuilder()
    builder.feed(html)
    builder.close()

    text = "".join(builder.chunks)
    lines = [line.strip() for line in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() + "\n"
