"""Derive a plain-text part from rendered HTML, for templates saved without one."""

from __future__ import annotations

import re

from services.sequencer.templates.html_pass import Attributes, Position, read_html

_BLOCK_TAGS = frozenset(
    {"p", "div", "section", "article", "header", "footer", "table", "tr", "ul", "ol", "blockquote", "pre",
     "h1", "h2", "h3", "h4", "h5", "h6", "center"}
)
_SKIPPED_TAGS = frozenset({"head", "style", "script", "title", "template", "noscript"})


class TextBuilder:
    """A listener to a pass over the HTML that builds its readable plain text."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self._skip_depth = 0
        self._links: list[tuple[str | None, int]] = []

    def start_tag(self, tag: str, attrs: Attributes, position: Position) -> None:
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

    def end_tag(self, tag: str, position: Position) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.chunks.append("\n\n")
        elif tag == "a" and self._links:
            self._close_link()

    def text(self, data: str) -> None:
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

    def result(self) -> str:
        """Return the text of the pass: block elements become paragraphs, links show their URL."""
        text = "".join(self.chunks)
        lines = [line.strip() for line in text.split("\n")]
        text = "\n".join(lines)
        text = re.sub(r"\n{3,}", "\n\n", text)
        return text.strip() + "\n"


def html_to_text(html: str) -> str:
    """Return readable plain text for `html`: block elements become paragraphs, links show their URL."""
    builder = TextBuilder()
    read_html(html, builder)
    return builder.result()
