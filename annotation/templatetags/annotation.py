from django import template
from django.utils.safestring import mark_safe

from annotation.rendering import render_layout, render_markdown

register = template.Library()


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def markdown_trusted(text):
    """Guidelines written by a lead: Markdown with the allow-listed HTML tags, sanitized."""
    return render_markdown(text or "", allow_html=True)


@register.filter
def scale_points(scale):
    labels = scale.get("labels") or {}
    return [
        {"value": v, "label": labels.get(str(v), "")} for v in range(scale["min"], scale["max"] + 1)
    ]


@register.simple_tag
def checked(answers, name, value):
    """' checked' when the answer to ``name`` is or contains ``value``."""
    answer = answers.get(str(name), answers.get(name)) if isinstance(answers, dict) else None
    chosen = answer if isinstance(answer, list | dict) else [answer]
    return " checked" if str(value) in {str(a) for a in chosen} else ""


@register.filter
def layout_css(project):
    """The rules of the project's Potato layout (the same for every item, so the page
    serves them once under its CSP nonce; fetched fragments carry none)."""
    if not project.html_layout:
        return ""
    return mark_safe(render_layout(project.html_layout, {}).css)  # noqa: S308 — checked rules
