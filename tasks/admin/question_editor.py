"""The project form's question editor: the ``questions`` field as one JSON text that the
structured editor (``static/js/question-editor.js``) reads and writes, the notice and the
confirmation a schema change needs once judgments exist, and the templates a new project
starts from.

The JSON text is canonical, so that opening it and saving it again changes nothing, byte for
byte: two-space indents, keys in PostgreSQL's jsonb order (shorter first, then by their
UTF-8 bytes, which is the order a saved schema comes back in), whole numbers without
``.0`` (as JavaScript writes them). The editor's ``serialize`` writes exactly this text."""

import json

from django import forms
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import mark_safe

from tasks import project_templates
from tasks.models.projects import SCHEMA_FIELDS
from tasks.schema import QuestionSchemaError, default_questions, validate_questions


def _jsonb_order(key: str) -> tuple[int, bytes]:
    encoded = key.encode("utf-8")
    return len(encoded), encoded


def _canonical(value):
    if isinstance(value, dict):
        return {k: _canonical(value[k]) for k in sorted(value, key=_jsonb_order)}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def schema_text(value) -> str:
    """A question schema as the editor writes it (see the module's docstring)."""
    return json.dumps(_canonical(value), indent=2, ensure_ascii=False)


class SchemaJSONField(forms.JSONField):
    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value  # what the lead typed, kept to be corrected
        return schema_text(value)


class QuestionEditorWidget(forms.Textarea):
    """The JSON textarea (the "Edit as JSON" view and the one source of truth), with the
    structured editor mounted above it. ``problems`` (placed schema errors) and ``guard``
    (judgments already made) are set by the form."""

    template = "admin/tasks/project/question_editor.html"

    def __init__(self, attrs=None):
        super().__init__({"rows": 14, "cols": 90, "class": "vLargeTextField", **(attrs or {})})
        self.problems: list[dict] = []
        self.guard: dict | None = None

    def render(self, name, value, attrs=None, renderer=None):
        textarea = super().render(name, value, attrs, renderer)
        context = {
            "textarea": textarea,
            "textarea_id": (attrs or {}).get("id", f"id_{name}"),
            "preview_url": reverse("annotation:question_preview"),
            "problems": self.problems,
            "guard": self.guard,
        }
        return mark_safe(render_to_string(self.template, context))  # noqa: S308 — a template


class QuestionEditorForm(forms.ModelForm):
    """The project form's questions and their guardrail. A project with judgments saves
    changed questions, mode or layout only when the lead ticks ``confirm_schema_change``:
    its judgments keep the version they were made under, new ones get the next."""

    questions = SchemaJSONField(
        required=False,
        widget=QuestionEditorWidget(),
        help_text="The question schema as JSON. Empty: the default for the mode.",
    )
    confirm_schema_change = forms.BooleanField(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        project = self.instance
        self.judgments = project.judgments.count() if project.pk else 0
        self.schema_version = project.schema_version
        if self.judgments:
            self.fields["questions"].widget.guard = {
                "judgments": self.judgments,
                "version": self.schema_version,
                "next_version": self.schema_version + 1,
            }
        self.fields[
            "confirm_schema_change"
        ].label = f"I understand: existing judgments are kept under version {self.schema_version}"

    def clean_questions(self):
        questions = self.cleaned_data.get("questions")
        mode = self.cleaned_data.get("mode") or self.instance.mode
        try:
            return validate_questions(questions or default_questions(mode), mode=mode)
        except QuestionSchemaError as invalid:
            self.fields["questions"].widget.problems = [p.as_dict() for p in invalid.problems]
            raise forms.ValidationError(invalid.errors_list) from None

    def clean(self):
        cleaned = super().clean()
        if self.judgments and not cleaned.get("confirm_schema_change"):
            changed = [
                f for f in SCHEMA_FIELDS if f in cleaned and cleaned[f] != getattr(self.instance, f)
            ]
            if changed:
                self.add_error(
                    "confirm_schema_change",
                    f"{self.judgments} judgments were made under schema version "
                    f"{self.schema_version}. To change the {' and '.join(changed)}, tick "
                    f"“{self.fields['confirm_schema_change'].label}”.",
                )
        return cleaned


def template_choices() -> list[dict]:
    """The templates the Add project page offers, as links."""
    return [
        {"key": t.key, "title": t.title, "summary": t.summary}
        for t in project_templates.TEMPLATES.values()
    ]


def template_initial(key: str | None) -> dict:
    """The form's initial data for the chosen template; a blank project starts from the
    default questions, so that the editor has rows to show."""
    chosen = project_templates.get(key)
    return chosen.initial() if chosen else {"questions": default_questions()}
