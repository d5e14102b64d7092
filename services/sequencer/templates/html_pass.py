"""One pass of `html.parser` over rendered HTML, shared by everything that reads its markup.

Tracking needs the link tags of a message, and a template without a text part gets one derived from
the same HTML. A pass of the pure-Python parser over an 11 KB newsletter took about 1 ms on a two-core
AMD EPYC host, and three of them cost more than the rest of the sequencer's work on an email. So the
readers listen to one pass instead of each parsing the message.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Protocol

Attributes = list[tuple[str, str | None]]


class Position(Protocol):
    """The parser's place in the HTML, which a listener may read while it handles a tag."""

    def getpos(self) -> tuple[int, int]: ...

    def get_starttag_text(self) -> str | None: ...


class HtmlListener(Protocol):
    """A reader of one pass, which gets the tags and text in document order."""

    def start_tag(self, tag: str, attrs: Attributes, position: Position) -> None: ...

    def end_tag(self, tag: str, position: Position) -> None: ...

    def text(self, data: str) -> None: ...


class _Pass(HTMLParser):
    def __init__(self, listeners: tuple[HtmlListener, ...]) -> None:
        super().__init__(convert_charrefs=True)
        self.listeners = listeners

    def handle_starttag(self, tag: str, attrs: Attributes) -> None:
        for listener in self.listeners:
            listener.start_tag(tag, attrs, self)

    def handle_endtag(self, tag: str) -> None:
        for listener in self.listeners:
            listener.end_tag(tag, self)

    def handle_data(self, data: str) -> None:
        for listener in self.listeners:
            listener.text(data)


def read_html(html: str, *listeners: HtmlListener) -> None:
    """Parse `html` once and hand every start tag, end tag and piece of text to each listener.

    A self-closing tag such as `<br/>` reaches the listeners as a start tag followed by its end tag.
    """
    parser = _Pass(listeners)
    parser.feed(html)
    parser.close()
