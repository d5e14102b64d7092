"""Template validation, sandboxed rendering, personalisation and tracking."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from services.kit.tokens import TokenPurpose, TokenSigner
from services.sequencer.sending import tracking_links
from services.sequencer.templates import (
    EmailTemplate,
    Recipient,
    TemplateRenderError,
    TemplateSecurityError,
    TemplateValidationError,
    TrackingLinks,
    html_to_text,
    render_email,
    rewrite_links,
    validate_template,
)

UNSUBSCRIBE = "https://go.example.com/u/TOKEN"


def fake_links() -> TrackingLinks:
    return TrackingLinks(
        unsubscribe_url=lambda: UNSUBSCRIBE,
        click_url=lambda url: "https://go.example.com/t/c/" + url.replace("://", "~"),
        open_url=lambda: "https://go.example.com/t/o/OPEN",
    )


def recipient(**contact: object) -> Recipient:
    return Recipient(contact={"email": "ana@example.com", **contact})


def render(html: str, subject: str = "Hello", text: str | None = None, person: Recipient | None = None):
    return render_email(EmailTemplate(subject, html, text), person or recipient(), fake_links())


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"])
        if tag == "img" and values.get("src"):
            self.images.append(values["src"])


def links_in(html: str) -> _Hrefs:
    parser = _Hrefs()
    parser.feed(html)
    return parser


# --- personalisation --------------------------------------------------------------------------------


@pytest.mark.parametrize("first_name", [None, "", "   "])
def test_missing_first_name_uses_fallback(first_name: str | None) -> None:
    rendered = render(
        "<p>Hi {{ contact.first_name | fallback('there') }},</p>",
        subject="{{ contact.first_name | fallback('Hello') }}, your guide",
        person=recipient(first_name=first_name),
    )

    assert "Hi there," in rendered.html
    assert "Hi ," not in rendered.html
    assert rendered.subject == "Hello, your guide"


def test_present_first_name_printed() -> None:
    rendered = render("<p>Hi {{ contact.first_name | fallback('there') }},</p>", person=recipient(first_name="Ana"))

    assert "Hi Ana," in rendered.html


def test_jinja_default_filter_also_works() -> None:
    rendered = render("<p>Hi {{ contact.first_name | default('there') }},</p>", person=recipient(first_name=""))

    assert "Hi there," in rendered.html


def test_bare_token_rejected_at_save() -> None:
    with pytest.raises(TemplateValidationError) as caught:
        validate_template("Hi", "<p>Hi {{ contact.first_name }},</p>")

    issue = caught.value.issues[0]
    assert issue.part == "html"
    assert issue.line == 1
    assert "fallback" in issue.message


def test_guarded_token_allowed() -> None:
    html = "{% if contact.first_name %}Hi {{ contact.first_name }},{% else %}Hello,{% endif %}"
    validate_template("s", html)

    assert "Hello," in render(html).html
    assert "Hi Ana," in render(html, person=recipient(first_name="Ana")).html


def test_negated_guard_allows_else_part() -> None:
    validate_template("s", "{% if not company.name %}Hi{% else %}Hi {{ company.name }}{% endif %}")

    with pytest.raises(TemplateValidationError):
        validate_template("s", "{% if not company.name %}Hi {{ company.name }}{% endif %}")


def test_subscript_token_fails_render() -> None:
    with pytest.raises(TemplateRenderError, match="contact.first_name is empty for this contact"):
        render("<p>Hi {{ contact['first_name'] }},</p>")


def test_contact_email_needs_no_fallback() -> None:
    assert "ana@example.com" in render("<p>{{ contact.email }}</p>").html


def test_attributes_and_company_tokens() -> None:
    person = Recipient(
        contact={"email": "a@example.com", "first_name": "Ana"},
        attributes={"job_title": "CTO", "first_name": "Shadowed"},
        company={"name": "Acme", "address": {"city": "Berlin"}},
    )

    html = render(
        "{{ contact.first_name|fallback('x') }} {{ contact.job_title|fallback('x') }} "
        "{{ company.name|fallback('x') }} {{ company.address.city|fallback('x') }} {{ company.address.zip|fallback('none') }}",
        person=person,
    ).html

    assert "Ana CTO Acme Berlin none" in html


def test_missing_nested_group_is_false() -> None:
    html = render("{% if company.address.city %}city{% else %}no city{% endif %}").html

    assert "no city" in html


def test_dynamic_blocks_by_interest_segment_stage() -> None:
    html = (
        "{% if has_interest('security') %}SEC{% elif in_segment('seg-saas') %}SAAS"
        "{% elif stage_in('mql', 'sql') %}HOT{% else %}GENERIC{% endif %}"
    )

    def block(person: Recipient) -> str:
        return render(html, person=person).html

    assert "SEC" in block(Recipient(contact={"email": "a@x.io"}, interests=["Security"]))
    assert "SAAS" in block(Recipient(contact={"email": "a@x.io"}, segment_ids=frozenset({"seg-saas"})))
    assert "HOT" in block(Recipient(contact={"email": "a@x.io"}, stage="sql"))
    assert "GENERIC" in block(Recipient(contact={"email": "a@x.io"}, stage="lead"))


def test_stage_and_interests_visible_on_contact() -> None:
    person = Recipient(contact={"email": "a@x.io"}, stage="mql", interests=["ai", "security"])

    html = render("{{ contact.stage|fallback('') }}:{{ contact.interests|join(',') }}", person=person).html

    assert "mql:ai,security" in html


# --- escaping and data is never code ----------------------------------------------------------------


def test_html_escapes_values_text_does_not() -> None:
    person = recipient(first_name="<b>Ana & Co</b>")

    rendered = render(
        "<p>{{ contact.first_name|fallback('x') }}</p>",
        subject="For {{ contact.first_name|fallback('x') }}",
        text="Hi {{ contact.first_name|fallback('x') }}",
        person=person,
    )

    assert "&lt;b&gt;Ana &amp; Co&lt;/b&gt;" in rendered.html
    assert rendered.subject == "For <b>Ana & Co</b>"
    assert rendered.text.startswith("Hi <b>Ana & Co</b>")


def test_template_syntax_in_contact_data_stays_text() -> None:
    rendered = render("<p>{{ contact.first_name|fallback('x') }}</p>", person=recipient(first_name="{{ 7*7 }}{% if 1 %}"))

    assert "{{ 7*7 }}{% if 1 %}" in rendered.html
    assert "49" not in rendered.html


def test_subject_line_breaks_collapse() -> None:
    rendered = render("<p>x</p>", subject="{{ contact.first_name|fallback('x') }} news", person=recipient(first_name="Ana\r\nBcc: evil@example.com"))

    assert "\n" not in rendered.subject
    assert "\r" not in rendered.subject
    assert rendered.subject == "Ana Bcc: evil@example.com news"


# --- save-time validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "source", "fragment"),
    [
        ("html", "{% if %}", "syntax error"),
        ("subject", "Hi {{ contact.first_name | fallback('x') ", "syntax error"),
        ("text", "{% for x in %}", "syntax error"),
        ("html", "{{ ''.__class__.__mro__[1].__subclasses__() }}", "'__class__' is not allowed"),
        ("html", "{{ contact.__init__.__globals__ }}", "'__init__' is not allowed"),
        ("html", "{{ contact['__class__'] }}", "'__class__' is not allowed"),
        ("html", "{{ config.items() }}", "unknown name 'config'"),
        ("html", "{{ request.application }}", "unknown name 'request'"),
        ("html", "{{ lipsum.__globals__['os'].popen('id').read() }}", "not allowed"),
        ("html", "{{ cycler.__init__.__globals__.os }}", "not allowed"),
        ("html", "{{ self._TemplateReference__context }}", "not allowed"),
        ("html", "{{ os.system('id') }}", "unknown name 'os'"),
        ("html", "{{ open('/etc/passwd').read() }}", "unknown name 'open'"),
        ("html", "{{ 'a'.format_map({}) }}", "'format_map' is not allowed"),
        ("html", "{% include 'secrets.html' %}", "include"),
        ("html", "{% extends 'base.html' %}", "extends"),
        ("html", "{% import 'macros.html' as m %}", "import"),
        # The sandbox rewrites `~` when it compiles a template, after these checks read it.
        ("html", "<p>{{ 'Hi ' ~ contact.first_name }}</p>", "may be empty"),
        ("subject", "   ", "must not be empty"),
    ],
)
def test_validation_rejects_and_names_part(part: str, source: str, fragment: str) -> None:
    parts = {"subject": "Hello", "html": "<p>x</p>", "text": None, part: source}

    with pytest.raises(TemplateValidationError) as caught:
        validate_template(parts["subject"], parts["html"], parts["text"])

    assert {issue.part for issue in caught.value.issues} == {part}
    assert any(fragment in issue.message for issue in caught.value.issues), caught.value.issues
    assert str(caught.value).startswith(f"invalid template: {part}")


def test_syntax_error_reports_line() -> None:
    with pytest.raises(TemplateValidationError) as caught:
        validate_template("s", "<p>one</p>\n<p>two</p>\n{% if x %}")

    assert caught.value.issues[0].line == 3


def test_valid_template_passes() -> None:
    validate_template(
        "Hi {{ contact.first_name | fallback('there') }}",
        "{% for item in contact.interests %}<li>{{ item }}</li>{% endfor %}<a href='{{ unsubscribe_url }}'>x</a>",
        "Plain {{ company.name | fallback('') }}",
    )


# --- render-time injection refusal ------------------------------------------------------------------


@pytest.mark.parametrize(
    "html",
    [
        "{{ contact['__cla' ~ 'ss__'] }}",
        "{% set name = '__glo' ~ 'bals__' %}{{ has_interest[name] }}",
        "{{ (contact|attr('__class__')) }}",
        "{{ contact.interests.append('x') }}",
        "{{ 'a' * 100000000 }}",
        "{{ 9 ** 9999 }}",
        "{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxx{% endfor %}{% endfor %}",
        "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
        # Loops that print nothing never reach the output cap, so their steps are counted instead.
        "{% for i in range(100000) %}{% for j in range(1000) %}{% if j == -1 %}x{% endif %}{% endfor %}{% endfor %}ok",
        "{% for i in range(99999) %}{% set items = range(99999)|list %}{% endfor %}ok",
        "{% for i in range(1000) %}{{ ('x' * 999999)|length }}{% endfor %}",
        "{% macro inner() %}{% for j in range(500) %}{% endfor %}{% endmacro %}{% for i in range(1000) %}{{ inner() }}{% endfor %}",
        "{% set range = contact.interests %}{% for i in 'x' * 900000 %}{% for j in 'y' * 900000 %}{% endfor %}{% endfor %}",
        # Calls count too: a macro calling itself twice per level, and a recursive loop's loop(items).
        "{% macro f(d) %}{% if d > 0 %}{{ f(d-1) }}{{ f(d-1) }}{% endif %}{% endmacro %}{{ f(26) }}x",
        "{% set s = 'x'|center(2000) %}{% for c in [1] recursive %}{% if loop.depth < 4 %}{{ loop(s) }}{% endif %}{% endfor %}x",
        # Widths that would build huge strings even when nothing prints them.
        "{{ ('x'|center(300000000))|length }}",
        "{{ ('x'|center(9000))|map('center', 9000)|map('length')|sum }}",
        "{{ ('%300000000s' % 1)|length }}",
        "{{ ('%300000000s'|format(1))|length }}",
    ],
)
def test_render_refuses_injection_and_runaway(html: str) -> None:
    with pytest.raises(TemplateSecurityError):
        render(html)


def doubled_25_times(step: str, start: str = "'x'") -> str:
    """Return a template that runs `step` 25 times, doubling `ns.s` from one character or item to 33,554,432."""
    return (
        "{% macro twice(s) %}{{ s }}{{ s }}{% endmacro %}"
        f"{{% set ns = namespace(s={start}) %}}{{% for i in range(25) %}}{step}{{% endfor %}}{{{{ ns.s|length }}}}"
    )


# 900,000 characters in `s`, within the step budget.
LONG_TEXT = "{% set s = ('x' * 1000)|replace('x', 'y' * 900) %}"


# Each of these builds millions of characters or items within the step budget, without printing them.
@pytest.mark.parametrize(
    ("html", "operation"),
    [
        (doubled_25_times("{% set ns.s = ns.s + ns.s %}"), "'+'"),
        (doubled_25_times("{% set ns.s = ns.s ~ ns.s %}"), "'~'"),
        (doubled_25_times("{% set ns.s = ns.s + ns.s %}", start="[1]"), "'+'"),
        (doubled_25_times("{% set ns.s = twice(ns.s) %}"), "a macro or block"),
        (doubled_25_times("{% set t %}{{ ns.s }}{{ ns.s }}{% endset %}{% set ns.s = t %}"), "a macro or block"),
        ("{{ (('x' * 1000)|replace('x', 'y' * 10000))|length }}", "replace"),
        ("{{ (range(1000)|join('y' * 10000))|length }}", "join"),
        ("{{ ([{'n': 'y' * 10000}] * 200)|join(attribute='n')|length }}", "join"),
        # One value printed by many fields, and lists turned into text.
        (LONG_TEXT + "{{ ('%s%s' % (s, s))|length }}", "a format string"),
        ("{% set s = 'y' * 1000 %}{{ (('%(a)s' * 30000) % {'a': s})|length }}", "a format string"),
        (LONG_TEXT + "{{ ('%s%s'|format(s, s))|length }}", "a format string"),
        (LONG_TEXT + "{{ ([s] * 1000)|string|length }}", "string"),
        (LONG_TEXT + "{{ ([s] * 1000)|tojson|length }}", "tojson"),
        (LONG_TEXT + "{{ ([s] * 1000)|pprint|length }}", "pprint"),
        # Jinja's optimizer would join these constant operands at compile time, before any check.
        ("{{ (" + " ~ ".join(["'y'|center(9999)"] * 101) + ")|length }}", "'~'"),
    ],
)
def test_render_caps_strings_built_on_the_way(html: str, operation: str) -> None:
    with pytest.raises(TemplateSecurityError) as raised:
        render(html)

    assert f"{operation} would create" in str(raised.value)
    assert "more than the maximum of 1000000" in str(raised.value)


def test_strings_under_the_cap_still_build() -> None:
    html = (
        "{% set ns = namespace(s='x') %}{% for i in range(19) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}"
        "|{{ ('ab' + 'cd') ~ ([1] + [2])|length }}"
        "|{{ ('x' * 1000)|replace('x', 'y' * 900)|length }}"
        "|{{ range(100)|join('y' * 9000)|length }}"
        "|{{ '%s-%d'|format('a', 3) }}|{{ '%(k)s' % {'k': 'c'} }}|{{ [1, 'd']|tojson }}|{{ [2]|string }}"
    )

    rendered = render(html)

    assert "524288|abcd2|900000|891190|a-3|c|[1, \"d\"]|[2]" in rendered.html


def test_concatenation_keeps_escaping() -> None:
    html = (
        "{{ ('<i>'|safe) ~ '<b>' ~ contact.first_name|fallback('') }}"
        "|{% set x %}<u>{{ contact.first_name|fallback('') }}</u>{% endset %}{{ x ~ '&' }}"
        "|{{ ('<i>'|safe) + '<b>' }}|{{ ['<s>'|safe, '<b>']|join }}|{{ ('<s>'|safe)|replace('s', '<') }}"
    )

    rendered = render(html, person=recipient(first_name="A&B"))

    assert "<i>&lt;b&gt;A&amp;B|<u>A&amp;B</u>&amp;|<i>&lt;b&gt;|<s>&lt;b&gt;|<&lt;>" in rendered.html


def test_ordinary_formats_and_filters_render() -> None:
    html = (
        "{{ '%.2f'|format(3.14159) }} {{ '%s and %s' % ('a', 'b') }}"
        "|{{ contact.first_name|fallback('friend')|center(9) }}|{{ 'a b c'|wordwrap(3) }}"
        "{% macro hi(name) %}Hi {{ name }}{% endmacro %}|{{ hi(contact.first_name|fallback('friend')) }}"
    )

    rendered = render(html, person=recipient(first_name="Ana"))

    assert "3.14 a and b" in rendered.html
    assert "|   Ana   |" in rendered.html
    assert "a b\nc" in rendered.html
    assert "|Hi Ana" in rendered.html


def test_step_budget_is_per_render() -> None:
    html = "{% for i in range(60000) %}{% endfor %}{% for i in range(30000) %}{% endfor %}<p>done</p>"

    first, second = render(html), render(html)

    assert "done" in first.html
    assert "done" in second.html


def test_loops_keep_their_features() -> None:
    html = (
        "{% for item in contact.interests %}{{ loop.index }}/{{ loop.length }}{% if loop.last %}.{% endif %}{% endfor %}"
        "{% for item in contact.interests if item != 'b' %}[{{ item }}]{% endfor %}"
        "{% for item in [] %}x{% else %}(none){% endfor %}"
    )

    rendered = render(html, person=recipient(interests=["a", "b", "c"]))

    assert "1/32/33/3." in rendered.html
    assert "[a][c]" in rendered.html
    assert "(none)" in rendered.html


def test_render_revalidates_stored_template() -> None:
    with pytest.raises(TemplateValidationError):
        render("{{ ''.__class__ }}")


# --- text part ------------------------------------------------------------------------------------


def test_text_derived_from_html_when_missing() -> None:
    html = (
        "<html><head><style>p{color:red}</style><title>T</title></head><body>"
        "<h1>Welcome&nbsp;aboard</h1><p>Read the <a href='https://example.com/guide'>guide</a>.</p>"
        "<ul><li>One</li><li>Two</li></ul><script>alert(1)</script></body></html>"
    )

    text = render(html).text

    assert "Welcome aboard" in text
    assert "guide (https://example.com/guide)" in text
    assert "- One\n- Two" in text
    assert "color:red" not in text
    assert "alert" not in text
    assert f"Unsubscribe: {UNSUBSCRIBE}" in text
    assert "go.example.com/t/c" not in text


def test_given_text_part_used() -> None:
    rendered = render("<p>HTML</p>", text="Plain version, unsubscribe: {{ unsubscribe_url }}")

    assert rendered.text.startswith("Plain version")
    assert rendered.text.count(UNSUBSCRIBE) == 1


def test_html_to_text_collapses_whitespace() -> None:
    assert html_to_text("<div>\n  a   b\n</div><div>c</div>") == "a b\n\nc\n"


# --- tracking ---------------------------------------------------------------------------------------


def test_links_rewritten_pixel_and_unsubscribe_added() -> None:
    html = (
        "<html><body><a href=\"https://example.com/a?x=1&amp;y=2\">A</a>"
        "<a href='http://example.com/b'>B</a><a href=mailto:sales@example.com>mail</a>"
        "<a href=\"#top\">top</a><!-- <a href=\"https://example.com/commented\">c</a> -->"
        "</body></html>"
    )

    rendered = render(html)
    found = links_in(rendered.html)

    assert found.hrefs[:2] == [
        "https://go.example.com/t/c/https~example.com/a?x=1&y=2",
        "https://go.example.com/t/c/http~example.com/b",
    ]
    assert "mailto:sales@example.com" in found.hrefs
    assert "#top" in found.hrefs
    assert '<a href="https://example.com/commented">' in rendered.html
    assert UNSUBSCRIBE in found.hrefs
    assert found.images == ["https://go.example.com/t/o/OPEN"]
    assert rendered.html.index("/t/o/OPEN") < rendered.html.index("</body>")


def test_template_placed_unsubscribe_not_tracked_or_duplicated() -> None:
    rendered = render("<p><a href=\"{{ unsubscribe_url }}\">Leave</a></p>")

    assert links_in(rendered.html).hrefs == [UNSUBSCRIBE]


def test_no_track_marker_keeps_link() -> None:
    rewritten = rewrite_links('<a data-no-track href="https://example.com/view">v</a>', lambda url: "TRACKED")

    assert rewritten == '<a href="https://example.com/view">v</a>'


def test_rewrite_ignores_href_text_inside_other_attribute() -> None:
    rewritten = rewrite_links(
        '<a title="see href=https://evil.example" HREF="https://example.com/x">x</a>', lambda url: f"T[{url}]"
    )

    assert rewritten == '<a title="see href=https://evil.example" HREF="T[https://example.com/x]">x</a>'


def test_rewrite_keeps_other_markup_byte_for_byte() -> None:
    html = "<p class='a'>\n  <a href=\"https://example.com/1\" class=\"btn\">1</a>\n</p>\n<area shape=rect href='https://example.com/2'>"

    rewritten = rewrite_links(html, lambda url: "X")

    assert rewritten == "<p class='a'>\n  <a href=\"X\" class=\"btn\">1</a>\n</p>\n<area shape=rect href=\"X\">"


def test_crlf_message_tracked_and_derived() -> None:
    # One pass finds the links and derives the text, so with CRLF line ends and a self-closing tag
    # between the links, each rewrite must still land on its tag and the text keep the real URLs.
    html = (
        "<html>\r\n<body>\r\n<p>Story <a href='https://example.com/1'>one</a><br/>\r\n"
        "<a href=\"https://example.com/2\">two</a></p>\r\n</body>\r\n</html>"
    )

    rendered = render(html)

    assert links_in(rendered.html).hrefs == [
        "https://go.example.com/t/c/https~example.com/1",
        "https://go.example.com/t/c/https~example.com/2",
        UNSUBSCRIBE,
    ]
    assert rendered.html.index(UNSUBSCRIBE) < rendered.html.index("</body>")
    assert "one (https://example.com/1)\ntwo (https://example.com/2)" in rendered.text
    assert f"Unsubscribe: {UNSUBSCRIBE}" in rendered.text


@pytest.mark.parametrize(
    "trailer",
    ["<!-- old </body> -->", "<script>var end = '</body>';</script>", '<p title="</body>">x</p>'],
)
def test_footer_skips_body_end_in_text(trailer: str) -> None:
    # A "</body>" that the parser reads as text must not receive the footer and pixel, where a
    # recipient would see no unsubscribe link.
    rendered = render(f"<html><body><p>Hi</p></body>{trailer}</html>")

    found = links_in(rendered.html)
    assert found.hrefs == [UNSUBSCRIBE]
    assert found.images == ["https://go.example.com/t/o/OPEN"]
    assert rendered.html.index(UNSUBSCRIBE) < rendered.html.index("</body>")


def test_footer_appended_without_body() -> None:
    rendered = render("<p>Hi</p>")

    assert rendered.html.startswith("<p>Hi</p>")
    assert links_in(rendered.html).hrefs == [UNSUBSCRIBE]


def test_preview_without_click_or_open_tracking() -> None:
    links = TrackingLinks(unsubscribe_url=lambda: UNSUBSCRIBE)

    rendered = render_email(EmailTemplate("s", "<a href='https://example.com'>x</a>"), recipient(), links)

    assert links_in(rendered.html).hrefs == ["https://example.com", UNSUBSCRIBE]
    assert links_in(rendered.html).images == []


def test_signed_links_verify_in_gateway() -> None:
    signer = TokenSigner(["s" * 40])
    links = tracking_links(signer, "https://go.example.com", message_id="msg-1", contact_id="c-9")

    rendered = render_email(
        EmailTemplate("s", "<a href='https://example.com/pricing?plan=pro&amp;x=1'>p</a>"), recipient(), links
    )
    click, unsubscribe = links_in(rendered.html).hrefs
    pixel = links_in(rendered.html).images[0]

    claims = signer.verify(click.rsplit("/", 1)[1], TokenPurpose.CLICK)
    assert claims.url == "https://example.com/pricing?plan=pro&x=1"
    assert claims.message_id == "msg-1"
    assert signer.verify(unsubscribe.rsplit("/", 1)[1], TokenPurpose.UNSUBSCRIBE).contact_id == "c-9"
    assert signer.verify(pixel.rsplit("/", 1)[1], TokenPurpose.OPEN).message_id == "msg-1"
    assert click.startswith("https://go.example.com/t/c/")
    assert unsubscribe.startswith("https://go.example.com/u/")


def test_untrackable_link_is_render_error() -> None:
    signer = TokenSigner(["s" * 40])
    links = tracking_links(signer, "https://go.example.com", message_id="m", contact_id="c")
    long_link = "https://example.com/" + "a" * 3000

    with pytest.raises(TemplateRenderError, match="cannot be tracked"):
        render_email(EmailTemplate("s", f"<a href='{long_link}'>x</a>"), recipient(), links)


def test_tracking_links_reject_plain_http_base() -> None:
    with pytest.raises(ValueError, match="https"):
        tracking_links(TokenSigner(["s" * 40]), "http://go.example.com", message_id="m", contact_id="c")


def test_tracking_links_allow_loopback_http_base() -> None:
    links = tracking_links(TokenSigner(["s" * 40]), "http://127.0.0.1:8000", message_id="m", contact_id="c")

    assert links.unsubscribe_url().startswith("http://127.0.0.1:8000/u/")
