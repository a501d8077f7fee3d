"""The annotate page as an unsaved project would show it: the preview beside the project
form's question editor.

The lead's form is posted as JSON (questions as the editor's JSON text, mode, html_layout,
guidelines, and the id of the project being edited, if any). The answer is the workspace
fragment rendered through the annotate page's own templates from a project built in memory
(never saved) and a made-up assignment; or the schema's problems, placed at their fields,
for the editor to show there. The sample item is the edited project's first prompt with at
least two candidates — only ever a project of the caller's organization — or a built-in one.
"""

import copy
import json
from types import SimpleNamespace

from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import JsonResponse
from django.template.loader import render_to_string
from django.views.decorators.http import require_POST

from annotation.workspace import context_for, shown_in_order
from tasks.decorators import membership_required
from tasks.models import Candidate, Project, Prompt
from tasks.schema import QuestionSchemaError, default_questions, validate_questions

# A schema, a layout and guidelines fit in a few kilobytes; the editor never sends more.
PREVIEW_MAX_BYTES = 256 * 1024
FORM_TEXTS = ("mode", "html_layout", "guidelines")

SAMPLE_PROMPT = "Explain in two sentences why the sky is blue."
SAMPLE_RESPONSES = [
    "Sunlight is scattered by the molecules of the air, and blue light, with its shorter "
    "wavelength, is scattered far more than red. So blue light reaches our eyes from every "
    "direction of the sky.",
    "The sky reflects the colour of the oceans, which cover most of the Earth.",
    "Rayleigh scattering: air molecules scatter short wavelengths most strongly, so the "
    "scattered light we see overhead is mostly blue.",
    "Because of the way light works in the atmosphere.",
]
SAMPLE_COUNT = {Project.Mode.PAIRWISE: 2, Project.Mode.BEST_WORST: 3, Project.Mode.RANKING: 4}


class PreviewRefused(Exception):
    """A request the preview cannot read (a 400, with this message)."""


@membership_required
@require_POST
def question_preview(request):
    if not request.membership.manages:
        raise PermissionDenied("The preview is for project leads.")
    try:
        form = _read(request)
    except PreviewRefused as refused:
        return JsonResponse({"errors": [{"message": str(refused)}]}, status=400)
    try:
        project = unsaved_project(request, form)
    except QuestionSchemaError as invalid:
        # An answer, not a failure: the editor shows each problem at its field.
        return JsonResponse(
            {"html": "", "css": "", "errors": [p.as_dict() for p in invalid.problems]}
        )
    context = preview_context(project)
    html = render_to_string("annotation/_preview.html", context, request=request)
    css = context["layout"].css if context["layout"] else ""
    return JsonResponse({"html": html, "css": css, "errors": []})


def _read(request) -> dict:
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if not declared.isdigit() or int(declared) > PREVIEW_MAX_BYTES:
        raise PreviewRefused(f"The preview takes at most {PREVIEW_MAX_BYTES // 1024} KB.")
    try:
        form = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise PreviewRefused("The preview takes the project form as a JSON object.") from None
    if not isinstance(form, dict):
        raise PreviewRefused("The preview takes the project form as a JSON object.")
    for field in (*FORM_TEXTS, "questions"):
        if not isinstance(form.get(field, ""), str):
            raise PreviewRefused(f"'{field}' must be text.")
    if not isinstance(form.get("project"), int | None) or isinstance(form.get("project"), bool):
        raise PreviewRefused("'project' must be a project's id or null.")
    return form


def unsaved_project(request, form: dict) -> Project:
    """The project as the form describes it, in memory: the edited project's other settings
    (skipping, reasoning, imported fields) or a new project's defaults. Raises
    QuestionSchemaError for a schema that does not validate."""
    mode = form.get("mode") or Project.Mode.PAIRWISE
    text = form.get("questions", "").strip()
    try:
        questions = json.loads(text) if text else []
    except ValueError as exc:
        raise QuestionSchemaError(
            [f"questions: not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"]
        ) from None
    questions = validate_questions(questions or default_questions(mode), mode=mode)
    saved = _own_project(request, form.get("project"))
    project = copy.copy(saved) if saved else Project(organization=request.organization)
    project.pk = project.pk or 0  # only ever in the fragment's (never used) form URLs
    project.mode, project.questions = mode, questions
    project.html_layout = form.get("html_layout", "")
    project.guidelines = form.get("guidelines", "")
    return project


def _own_project(request, project_id) -> Project | None:
    if project_id is None:
        return None
    return Project.objects.get_for_member(request.membership, project_id)


def sample_item(project: Project) -> tuple[Prompt, list[Candidate]]:
    """The project's first prompt with two or more candidates (as many as the mode shows),
    or the built-in sample."""
    wanted = SAMPLE_COUNT.get(project.mode, 2)
    if project.pk:
        prompt = (
            Prompt.objects.filter(project_id=project.pk)
            .annotate(n=Count("candidates"))
            .filter(n__gte=2)
            .order_by("pk")
            .first()
        )
        if prompt is not None:
            return prompt, list(prompt.candidates.order_by("pk")[:wanted])
    prompt = Prompt(text=SAMPLE_PROMPT, messages=[])
    return prompt, [Candidate(text=text) for text in SAMPLE_RESPONSES[:wanted]]


def preview_context(project: Project) -> dict:
    """What ``annotation.workspace.context_for`` gives the annotate page's templates, for
    the sample item shown in the order it was read."""
    prompt, candidates = sample_item(project)
    assignment = SimpleNamespace(pk=0, project=project, item=SimpleNamespace(prompt=prompt))
    context = context_for(assignment, shown=shown_in_order(project, candidates))
    return {**context, "message": "", "reason": ""}
