"""Submitting and skipping assignments. Answers are checked against the project's question
schema and the preference is stored as candidate ids resolved through the assignment's
display order."""

from collections import Counter
from copy import copy
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from annotation.allocator import release_items
from annotation.models import Assignment, Judgment, JudgmentRevision
from annotation.verification import settle, settle_judged
from tasks import sqlrows
from tasks.audit import Action, diff, record
from tasks.importers.rows import candidate_hash
from tasks.models import Candidate, Item, Project


class AssignmentRefused(Exception):
    """The assignment cannot take this submit; the message says why to the annotator."""


def in_mode(project: Project, mode: str) -> Project:
    """An unsaved copy of ``project`` judged in ``mode``: nothing is written back."""
    judged = copy(project)
    judged.mode = mode
    return judged


def judged_as(project: Project, item) -> Project:
    """The project as ``item`` is judged: its form, its rules, its names.

    A chat project's mode says only "chat"; each of its items (a turn's replies) stores
    the mode it is judged in (a pair, or a ranking of 3-4). For such a project this is a
    copy in the item's mode (``in_mode``), so the annotate page, the submit and the review
    treat the item as in a project of that mode; every other project is itself (and its
    item is not read: the question editor's preview passes a sample)."""
    if project.mode != Project.Mode.CHAT:
        return project
    return in_mode(project, item.mode)


def judged_for(project: Project, assignment_id: int) -> Project:
    """``judged_as`` for the item of an assignment of ``project``; one query, and only for
    a chat project (the submit of every other project costs nothing more)."""
    if project.mode != Project.Mode.CHAT:
        return project
    mode = (
        Assignment.objects.filter(pk=assignment_id, project=project)
        .values_list("item__mode", flat=True)
        .first()
    )
    return in_mode(project, mode) if mode else project


def _locked(project: Project, assignment_id: int, annotator) -> Assignment:
    """The assignment, locked, if it is this annotator's in this project, with the project
    as its item is judged (``judged_as``)."""
    # Written out (tasks.sqlrows): on every submit and skip.
    found = sqlrows.rows(
        Assignment,
        "id = %s AND project_id = %s AND organization_id = %s FOR UPDATE",
        [assignment_id, project.pk, project.organization_id],
    )
    assignment = found[0] if found else None
    if assignment is None or assignment.annotator_id != annotator.pk:
        raise AssignmentRefused("This item is not assigned to you.")
    if project.mode == Project.Mode.CHAT:
        mode = Item.objects.filter(pk=assignment.item_id).values_list("mode", flat=True).get()
        project = in_mode(project, mode)
    assignment.project = project
    return assignment


def store_judgment(
    *,
    project: Project,
    assignment_id: int,
    annotator,
    answers: dict[str, Any],
    time_spent_ms: int = 0,
) -> Judgment:
    """Store the annotator's judgment for an assignment of theirs, in the caller's
    transaction, without a savepoint of its own (two round trips fewer): a refusal or an
    error fails the caller's whole transaction. ``submit_judgment`` is the same in a
    transaction of its own.

    A second submit of the same assignment (double click, retried request) returns the
    judgment already stored. A reclaimed or skipped assignment is refused with
    AssignmentRefused; answers that do not fit the schema raise ValidationError (by question).
    """
    assignment = _locked(project, assignment_id, annotator)
    if assignment.status == Assignment.Status.SUBMITTED:
        return assignment.judgment
    if assignment.status == Assignment.Status.EXPIRED:
        minutes = assignment.project.assignment_timeout_minutes
        raise AssignmentRefused(
            f"This item was handed to someone else after {minutes} minutes without a submit; "
            "your answer was not stored."
        )
    if assignment.status == Assignment.Status.SKIPPED:
        raise AssignmentRefused("You skipped this item.")
    fields = resolve_answers(assignment, answers)
    judgment = Judgment.objects.create(
        organization_id=assignment.organization_id,
        project=assignment.project,
        item_id=assignment.item_id,
        assignment=assignment,
        annotator=annotator,
        time_spent_ms=max(0, min(int(time_spent_ms or 0), 24 * 3600 * 1000)),
        **fields,
    )
    assignment.status, assignment.finished_at = Assignment.Status.SUBMITTED, timezone.now()
    assignment.save(update_fields=["status", "finished_at"])
    # What reveal tells once the answer is stored (the view's next step), read as it settles.
    judgment.item_pairs = settle_judged(judgment)
    # Last: the trail's row takes the organization's chain lock until the commit
    # (tasks.audit.chain), and every judgment of the organization waits for it.
    _audit(Action.JUDGMENT_CREATED, judgment, after=snapshot(judgment))
    return judgment


submit_judgment = transaction.atomic(store_judgment)


def _audit(action: str, judgment: Judgment, *, before=None, after=None) -> None:
    record(
        action,
        organization=judgment.organization_id,
        obj=judgment,
        object_repr=f"judgment {judgment.pk} of item {judgment.item_id}",
        changes=diff(before or {}, after or {}),
        data={"project": judgment.project_id, "item": judgment.item_id},
    )


@transaction.atomic
def skip_assignment(
    *, project: Project, assignment_id: int, annotator, reason: str = ""
) -> Assignment:
    assignment = _locked(project, assignment_id, annotator)
    project = assignment.project
    if assignment.status == Assignment.Status.SKIPPED:
        return assignment  # the page sent it again (its first answer was lost): done once
    if assignment.status != Assignment.Status.ACTIVE:
        raise AssignmentRefused("This item is no longer open for you.")
    if not project.allow_skip:
        raise AssignmentRefused("Skipping is not allowed in this project.")
    if project.skip_reason_required and not reason.strip():
        raise ValidationError({"skip_reason": "Say why you skip this item."})
    assignment.status, assignment.finished_at = Assignment.Status.SKIPPED, timezone.now()
    assignment.skip_reason = reason.strip()[:2000]
    assignment.save(update_fields=["status", "finished_at", "skip_reason"])
    release_items(Counter({assignment.item_id: 1}))
    return assignment


def resolve_answers(assignment: Assignment, answers: dict[str, Any]) -> dict[str, Any]:
    """Check answers against the project's questions; return Judgment fields."""
    project: Project = assignment.project
    order: list[int] = assignment.display_order
    if project.preference_question is None:
        raise ValidationError({"preference": "This project has no comparison question yet."})
    errors: dict[str, str] = {}
    fields: dict[str, Any] = {"answers": {}, "rubric_scores": {}}
    for question in project.questions:
        name, kind, value = question["name"], question["kind"], answers.get(question["name"])
        try:
            if kind == "preference":
                fields.update(_preference(project.mode, question, value, order))
            elif kind in ("choice", "multichoice"):
                fields["answers"][name] = _choice(question, value)
            elif kind == "text":
                fields["answers"][name] = _text(project, question, value)
            elif kind == "rating":
                for candidate_id, score in _rating(question, value, order).items():
                    fields["rubric_scores"].setdefault(str(candidate_id), {})[name] = score
            elif kind == "correction" and isinstance(value, str) and value.strip():
                fields["corrected"] = _correction(assignment, value)
        except ValidationError as exc:
            errors[name] = " ".join(exc.messages)
    if errors:
        raise ValidationError(errors)
    fields["reasoning"] = fields["answers"].pop("reasoning", "")
    fields["schema_version"] = project.schema_version
    return fields


def _preference(mode: str, question: dict, value: Any, order: list[int]) -> dict:
    if mode == Project.Mode.PAIRWISE:
        label = next((lb for lb in question["labels"] if lb["value"] == value), None)
        if label is None:
            raise ValidationError("Choose one of the labels.")
        base = {"label": label["text"], "strength": label.get("strength")}
        if label["means"] in ("tie", "both_bad"):
            return {**base, "outcome": label["means"]}
        first, second = (order[0], order[1]) if label["means"] == "A" else (order[1], order[0])
        return {
            **base,
            "outcome": Judgment.Outcome.PREFERRED,
            "chosen_id": first,
            "rejected_id": second,
        }
    if mode == Project.Mode.BEST_WORST:
        if not isinstance(value, dict):
            raise ValidationError("Pick the best and the worst response.")
        best, worst = _position(value.get("best"), order), _position(value.get("worst"), order)
        if best == worst:
            raise ValidationError("The best and the worst must be different responses.")
        return {
            "outcome": Judgment.Outcome.RANKED,
            "chosen_id": best,
            "rejected_id": worst,
            "ranking": [best, worst],
        }
    if not isinstance(value, list) or sorted(map(str, value)) != sorted(
        str(i) for i in range(1, len(order) + 1)
    ):
        raise ValidationError(f"Order all {len(order)} responses, each once.")
    ranking = [_position(position, order) for position in value]
    return {
        "outcome": Judgment.Outcome.RANKED,
        "chosen_id": ranking[0],
        "rejected_id": ranking[-1],
        "ranking": ranking,
    }


def _position(value: Any, order: list[int]) -> int:
    try:
        position = int(value)
    except (TypeError, ValueError):
        raise ValidationError("Pick a response by its number.") from None
    if not 1 <= position <= len(order):
        raise ValidationError(f"There are responses 1 to {len(order)}.")
    return order[position - 1]


def _choice(question: dict, value: Any):
    allowed = {option["value"] for option in question["options"]}
    if question["kind"] == "multichoice":
        values = value if isinstance(value, list) else ([] if value in (None, "") else [value])
        if not set(values) <= allowed:
            raise ValidationError("Choose among the listed options.")
        if question["required"] and not values:
            raise ValidationError("Choose at least one option.")
        return values
    if value in (None, ""):
        if question["required"]:
            raise ValidationError("Choose an option.")
        return None
    if value not in allowed:
        raise ValidationError("Choose one of the listed options.")
    return value


def _text(project: Project, question: dict, value: Any) -> str:
    text = (value or "").strip() if isinstance(value, str | type(None)) else None
    if text is None:
        raise ValidationError("Must be text.")
    required = question["required"] or (
        question["name"] == "reasoning" and project.reasoning_required
    )
    minimum = question["min_length"]
    if question["name"] == "reasoning":
        minimum = max(minimum, project.reasoning_min_length)
    if required and not text:
        raise ValidationError("This answer is required.")
    if text and len(text) < minimum:
        raise ValidationError(f"Write at least {minimum} characters ({len(text)} so far).")
    if len(text) > question["max_length"]:
        raise ValidationError(f"At most {question['max_length']} characters.")
    return text


def _rating(question: dict, value: Any, order: list[int]) -> dict[int, int]:
    scale = question["scale"]
    scores = value if isinstance(value, dict) else {}
    result = {}
    for position, candidate_id in enumerate(order, start=1):
        score = scores.get(str(position), scores.get(position))
        if score in (None, ""):
            if question["required"]:
                raise ValidationError(f"Score response {position}.")
            continue
        try:
            score = int(score)
        except (TypeError, ValueError):
            raise ValidationError(f"Response {position}: a whole number.") from None
        if not scale["min"] <= score <= scale["max"]:
            raise ValidationError(f"Response {position}: from {scale['min']} to {scale['max']}.")
        result[candidate_id] = score
    return result


def _correction(assignment: Assignment, text: str) -> Candidate:
    prompt_id = assignment.item.prompt_id
    # A correction that only repeats a candidate of the prompt (as the importer and the
    # generator compare texts: ``candidate_hash``) is that candidate, not a new one.
    text = text.strip()
    candidate, _ = Candidate.objects.get_or_create(
        prompt_id=prompt_id,
        content_hash=candidate_hash(text),
        defaults={
            "organization_id": assignment.organization_id,
            "text": text,
            "source": Candidate.Source.CORRECTED,
        },
    )
    return candidate


@transaction.atomic
def update_judgment(*, judgment_id: int, annotator, answers: dict[str, Any]) -> Judgment:
    """Edit one's own judgment; the previous version is kept as a JudgmentRevision."""
    judgment = (
        Judgment.objects.select_for_update(of=("self",))
        .select_related("assignment__project", "assignment__item")
        .filter(pk=judgment_id, annotator=annotator)
        .first()
    )
    if judgment is None:
        raise AssignmentRefused("This judgment is not yours.")
    assignment = judgment.assignment
    assignment.project = judged_as(assignment.project, assignment.item)
    fields = resolve_answers(assignment, answers)
    before = snapshot(judgment)
    JudgmentRevision.objects.create(
        organization_id=judgment.organization_id,
        judgment=judgment,
        version=judgment.version,
        snapshot=before,
    )
    # Start from a blank decision so nothing of the previous one lingers.
    judgment.chosen_id = judgment.rejected_id = judgment.strength = judgment.corrected = None
    judgment.label, judgment.ranking = "", []
    for name, value in fields.items():
        setattr(judgment, name, value)
    judgment.version += 1
    judgment.save()
    _audit(Action.JUDGMENT_EDITED, judgment, before=before, after=snapshot(judgment))
    settle(project=judgment.assignment.project, items=[judgment.item_id])
    return judgment


def snapshot(judgment: Judgment) -> dict:
    return {
        "outcome": judgment.outcome,
        "chosen": judgment.chosen_id,
        "rejected": judgment.rejected_id,
        "label": judgment.label,
        "strength": judgment.strength,
        "ranking": judgment.ranking,
        "answers": judgment.answers,
        "rubric_scores": judgment.rubric_scores,
        "schema_version": judgment.schema_version,
        "reasoning": judgment.reasoning,
        "corrected": judgment.corrected_id,
        "time_spent_ms": judgment.time_spent_ms,
        "updated_at": judgment.updated_at.isoformat(),
    }


@transaction.atomic
def undo_last_submit(*, project: Project, annotator) -> Assignment | None:
    """Reopen the annotator's last submitted assignment in the project: its judgment is
    removed and the item handed back to them; the item they were given next is released."""
    last = (
        Assignment.objects.select_for_update(of=("self",))
        .filter(project=project, annotator=annotator, status=Assignment.Status.SUBMITTED)
        .order_by("-finished_at")
        .first()
    )
    if last is None:
        return None
    current = list(
        Assignment.objects.select_for_update(of=("self",)).filter(
            project=project, annotator=annotator, status=Assignment.Status.ACTIVE
        )
    )
    for assignment in current:
        release_items(Counter({assignment.item_id: 1}))
        assignment.delete()
    for judgment in Judgment.objects.filter(assignment=last):
        _audit(Action.JUDGMENT_UNDONE, judgment, before=snapshot(judgment))
        judgment.delete()
    settle(project=project, items=[last.item_id])
    last.status, last.finished_at = Assignment.Status.ACTIVE, None
    last.expires_at = timezone.now() + timedelta(minutes=project.assignment_timeout_minutes)
    last.save(update_fields=["status", "finished_at", "expires_at"])
    return last
