"""The annotator's pages: the project list (``home``), annotate, history, edit.

Submit is one round trip: the form posts, and the answer is the next item (a fragment for
the page's script, or a redirect without JavaScript)."""

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_POST

from annotation import judge
from annotation.allocator import next_assignment
from annotation.models import Adjudication, Assignment, ItemNote, JudgeConfig, JudgeRun, Judgment
from annotation.services import (
    AssignmentRefused,
    judged_as,
    judged_for,
    skip_assignment,
    submit_judgment,
    undo_last_submit,
    update_judgment,
)
from annotation.verification import reveal, revealed_for
from annotation.workspace import answers_from_form, context_for, progress, project_rows
from tasks.decorators import lead_project, membership_required
from tasks.models import Project


@membership_required
def home(request):
    """The projects this member may work on, with their own and everyone's progress."""
    projects = list(Project.objects.for_member(request.membership).order_by("name"))
    rows = project_rows(projects, request.user)
    return render(request, "annotation/project_list.html", {"rows": rows})


def member_project(request, project_id: int) -> Project:
    """The project, if this member may work on it (the same rule as the project list);
    another organization's project is a 404."""
    project = Project.objects.get_for_member(request.membership, project_id)
    if project is None:
        raise Http404("No such project.")
    return project


def _wants_fragment(request: HttpRequest) -> bool:
    return request.headers.get("X-Chosen-Fragment") == "1"


def _respond(
    request,
    project,
    *,
    assignment=None,
    status=200,
    message="",
    level="info",
    answers=None,
    errors=None,
    revealed="",
):
    """The annotate page, or its workspace fragment as JSON for the page's script.
    ``level`` styles the message as Django's message tags do: success, info or error;
    ``revealed`` is what the source of the item just judged said (``reveal``)."""
    if assignment is None:
        allocation = next_assignment(project=project, annotator=request.user)
        assignment, reason = allocation.assignment, allocation.reason
    else:
        reason = ""
    context = {
        "project": project,
        "progress": progress(project, request.user),
        "message": message,
        "message_level": level,
        "reason": reason,
    }
    if assignment is not None:
        context.update(context_for(assignment, answers=answers, errors=errors))
    if _wants_fragment(request):
        html = render_to_string("annotation/_workspace.html", context, request=request)
        numbers = {k: v for k, v in context["progress"].items() if k != "project"}
        return JsonResponse(
            {"html": html, "message": message, "progress": numbers, "reveal": revealed},
            status=status,
        )
    return render(request, "annotation/annotate.html", context, status=status)


@membership_required
def annotate(request, project_id: int):
    return _respond(request, member_project(request, project_id))


def _act(request, project_id: int, assignment_id: int, action, done: str):
    """Run a submit or a skip and answer with the next item; a refused assignment (409) or
    answers that do not fit (400, the form kept as typed) say why."""
    project = member_project(request, project_id)
    answers = answers_from_form(judged_for(project, assignment_id), request.POST)
    try:
        done_with = action(project, answers)
    except AssignmentRefused as refused:
        return _respond(request, project, status=409, message=str(refused), level="error")
    except ValidationError as invalid:
        assignment = get_object_or_404(Assignment, pk=assignment_id, annotator=request.user)
        return _respond(
            request,
            project,
            assignment=assignment,
            status=400,
            level="error",
            answers=answers,
            errors=invalid.message_dict,
        )
    # A verification item's source is told only now that the expert has answered.
    revealed = ""
    if isinstance(done_with, Judgment):
        revealed = reveal(done_with, getattr(done_with, "item_pairs", None))
    if not _wants_fragment(request):
        if revealed:
            messages.info(request, revealed)
        return redirect("annotation:annotate", project_id=project.pk)
    return _respond(request, project, message=done, level="success", revealed=revealed)


@membership_required
@require_POST
def submit(request, project_id: int, assignment_id: int):
    return _act(
        request,
        project_id,
        assignment_id,
        lambda project, answers: submit_judgment(
            project=project,
            assignment_id=assignment_id,
            annotator=request.user,
            answers=answers,
            time_spent_ms=_int(request.POST.get("time_spent_ms")),
        ),
        "Saved.",
    )


@membership_required
@require_POST
def skip(request, project_id: int, assignment_id: int):
    return _act(
        request,
        project_id,
        assignment_id,
        lambda project, answers: skip_assignment(
            project=project,
            assignment_id=assignment_id,
            annotator=request.user,
            reason=request.POST.get("skip_reason", ""),
        ),
        "Skipped.",
    )


@membership_required
@require_POST
def undo(request, project_id: int):
    project = member_project(request, project_id)
    reopened = undo_last_submit(project=project, annotator=request.user)
    message = "Your last submit was undone." if reopened else "Nothing to undo."
    if not _wants_fragment(request):
        return redirect("annotation:annotate", project_id=project.pk)
    level = "success" if reopened else "info"
    return _respond(request, project, assignment=reopened, message=message, level=level)


@membership_required
def history(request, project_id: int):
    project = member_project(request, project_id)
    judgments = (
        Judgment.objects.filter(project=project, annotator=request.user)
        .select_related("item__prompt", "chosen", "rejected", "assignment")
        .order_by("-created_at")[:500]
    )
    return render(
        request,
        "annotation/history.html",
        {
            "project": project,
            "judgments": judgments,
            "discussed": _discussed(project, judgments),
            "revealed": revealed_for(judgments),
        },
    )


def _discussed(project: Project, judgments) -> set[int]:
    """Items of these judgments that have notes or a final decision the annotator may read."""
    if not project.discussion_visible_to_annotators:
        return set()
    item_ids = {j.item_id for j in judgments}
    noted = ItemNote.objects.filter(item_id__in=item_ids).values_list("item_id", flat=True)
    decided = Adjudication.objects.filter(item_id__in=item_ids).values_list("item_id", flat=True)
    return set(noted) | set(decided)


@membership_required
def edit(request, project_id: int, judgment_id: int):
    project = member_project(request, project_id)
    judgment = get_object_or_404(
        Judgment.objects.select_related("assignment__item__prompt", "assignment__project"),
        pk=judgment_id,
        project=project,
        annotator=request.user,
    )
    judged = judged_as(project, judgment.assignment.item)
    answers, errors, status = _answers_of(judgment, judged), {}, 200
    if request.method == "POST":
        answers = answers_from_form(judged, request.POST)
        try:
            update_judgment(judgment_id=judgment.pk, annotator=request.user, answers=answers)
            messages.success(request, "Your changes were saved.")
            return redirect("annotation:history", project_id=project.pk)
        except ValidationError as invalid:
            errors, status = invalid.message_dict, 400
    context = {
        "project": project,
        "judgment": judgment,
        "editing": True,
        **context_for(judgment.assignment, answers=answers, errors=errors),
    }
    return render(request, "annotation/edit.html", context, status=status)


def _answers_of(judgment: Judgment, project: Project) -> dict:
    """A stored judgment as form answers, to prefill the edit page (``project`` as the
    judgment's item is judged)."""
    order = judgment.assignment.display_order
    answers = dict(judgment.answers)
    answers["reasoning"] = judgment.reasoning
    for question in project.questions:
        if question["kind"] == "preference" and project.mode == Project.Mode.PAIRWISE:
            answers[question["name"]] = next(
                (lb["value"] for lb in question["labels"] if lb["text"] == judgment.label), None
            )
        elif question["kind"] == "preference" and judgment.ranking:
            positions = [order.index(cid) + 1 for cid in judgment.ranking]
            answers[f"{question['name']}_best"], answers[f"{question['name']}_worst"] = (
                positions[0],
                positions[-1],
            )
        elif question["kind"] == "rating":
            answers[question["name"]] = {
                str(order.index(int(cid)) + 1): scores[question["name"]]
                for cid, scores in judgment.rubric_scores.items()
                if question["name"] in scores
            }
    return answers


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


# --- the AI judge (leads only: annotators never see its verdicts, they must not be anchored) ---


class JudgeConfigForm(forms.ModelForm):
    """The judge's settings; the endpoint is one the organization may use."""

    class Meta:
        model = JudgeConfig
        fields = judge.SETTINGS
        widgets = {"prompt_template": forms.Textarea(attrs={"rows": 14, "cols": 80})}

    def __init__(self, *args, organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].queryset = judge.usable_endpoints(organization)
        self.fields["endpoint"].empty_label = None


@membership_required
def judge_page(request, project_id: int):
    """Configure the project's judge, see its runs, figures and per-item decisions."""
    project = lead_project(request, project_id)
    config = judge.config_of(project)
    instance = config or JudgeConfig(organization=project.organization, project=project)
    form = JudgeConfigForm(
        request.POST or None, instance=instance, organization=project.organization
    )
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        endpoint = data.pop("endpoint")
        try:
            judge.configure(project=project, endpoint_id=endpoint.pk, **data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, "The judge's settings are saved.")
            return redirect("annotation:judge", project_id=project.pk)
    runs = list(JudgeRun.objects.filter(project=project).select_related("created_by")[:10])
    latest = judge.latest_run(project)
    running = next((r for r in runs if not r.finished), None)
    context = {
        "project": project,
        "form": form,
        "config": config,
        "runs": runs,
        "latest": latest,
        "running": running,
        "rows": judge.decision_rows(latest) if latest else [],
    }
    return render(request, "annotation/judge.html", context)


@membership_required
@require_POST
def judge_run(request, project_id: int):
    """Start a run of the judge (or, with ``resume``, queue a failed run again)."""
    project = lead_project(request, project_id)
    resume = request.POST.get("resume")
    if resume:
        failed = get_object_or_404(JudgeRun, project=project, pk=resume)
        judge.resume_run(failed)
        messages.info(request, "The run asks for the verdicts it lacks.")
        return redirect("annotation:judge", project_id=project.pk)
    try:
        judge.start_run(project=project, created_by=request.user)
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    else:
        messages.info(request, "The judge is running.")
    return redirect("annotation:judge", project_id=project.pk)
