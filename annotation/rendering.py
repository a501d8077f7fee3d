"""Showing user content safely: responses and guidelines as sanitized Markdown, Potato
layouts with their placeholders filled by escaped values.

Markdown is rendered by Python-Markdown and then cleaned by nh3 (ammonia) with an allow-list:
no scripts, no event-handler attributes, no style, no external images (the CSP would block
them anyway). Raw HTML in a response is escaped before Markdown sees it, so ``<script>``
in a model's answer shows as text.
"""

import html
import re
import threading
from dataclasses import dataclass

import markdown
import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown.extensions import Extension

TAGS = {
    "p",
    "br",
    "hr",
    "strong",
    "em",
    "b",
    "i",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "a",
    "del",
}
ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}
EXTENSIONS = ["fenced_code", "tables", "sane_lists", "nl2br"]


class EscapeHtml(Extension):
    """Raw HTML in the source becomes text (Python-Markdown's documented way: drop its
    HTML block and inline-HTML handlers)."""

    def extendMarkdown(self, md):  # noqa: N802 — Python-Markdown's API
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")


_converters = threading.local()


def _converter(allow_html: bool) -> markdown.Markdown:
    """One Markdown instance per thread and kind, reset between documents (building one
    costs more than converting a short response)."""
    key = "trusted" if allow_html else "escaped"
    converter = getattr(_converters, key, None)
    if converter is None:
        extensions = EXTENSIONS if allow_html else [*EXTENSIONS, EscapeHtml()]
        converter = markdown.Markdown(extensions=extensions, output_format="html")
        setattr(_converters, key, converter)
    return converter.reset()


def render_markdown(text: str, *, allow_html: bool = False) -> SafeString:
    """Markdown → sanitized HTML. Model responses keep ``allow_html`` off: their angle
    brackets are text. Guidelines written by a lead may use the allow-listed tags."""
    rendered = _converter(allow_html).convert(text)
    cleaned = nh3.clean(
        rendered,
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    return mark_safe(cleaned)  # noqa: S308 — nh3's allow-list output


# Potato layouts: structure kept, placeholders filled with escaped values. Inline styles are
# not allowed by the CSP, so each ``style=""`` becomes a generated class whose rules are
# served in the page's nonce'd <style> element, after a check of every declaration.
LAYOUT_TAGS = TAGS | {"div", "span", "section", "header", "footer", "small", "label"}
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
STYLE_ATTR = re.compile(r"""\sstyle\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
CSS_PROPERTY = re.compile(r"^-?[a-z][a-z-]{0,40}$")
CSS_VALUE = re.compile(r"^[#\w\s.,%()+-]{1,200}$")


@dataclass
class Layout:
    html: SafeString
    css: str  # rules for the generated classes; safe to put in a <style> element


def _css(declarations: str) -> str:
    kept = []
    for declaration in declarations.split(";"):
        prop, _, value = declaration.partition(":")
        prop, value = prop.strip().lower(), value.strip()
        if (
            CSS_PROPERTY.match(prop)
            and CSS_VALUE.match(value)
            and "url" not in value.lower()
            and "expression" not in value.lower()
        ):
            kept.append(f"{prop}: {value}")
    return "; ".join(kept)


def render_layout(layout: str, values: dict[str, str]) -> Layout:
    """Fill ``{{field}}`` placeholders with escaped values, turn inline styles into classes,
    then sanitize the whole layout."""
    rules: list[str] = []

    def to_class(match: re.Match) -> str:
        css = _css(match.group(1) or match.group(2) or "")
        if not css:
            return ""
        rules.append(f".potato-layout .lyt-{len(rules)} {{ {css} }}")
        return f' class="lyt-{len(rules) - 1}"'

    styled = STYLE_ATTR.sub(to_class, layout)
    filled = PLACEHOLDER.sub(
        lambda m: html.escape(str(values.get(m.group(1), "")), quote=True), styled
    )
    cleaned = nh3.clean(filled, tags=LAYOUT_TAGS, attributes={"*": {"class"}})
    return Layout(mark_safe(cleaned), "\n".join(rules))  # noqa: S308 — nh3's allow-list output
