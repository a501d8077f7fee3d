"""What the annotate page shows for one assignment, and reading its form back."""

from dataclasses import dataclass

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Q, Sum

from annotation.models import Assignment, Judgment
from annotation.rendering import render_layout, render_markdown
from annotation.services import judged_as
from tasks import sqlrows
from tasks.models import Candidate, Item, Project

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class Shown:
    position: int  # 1-based, as on screen
    name: str  # "Response A" or "Response 3"
    candidate: Candidate
    html: str


def shown_candidates(assignment: Assignment) -> list[Shown]:
    # Written out (tasks.sqlrows): on every next item.
    params = [list(assignment.display_order), assignment.organization_id]
    shown = sqlrows.rows(Candidate, "id = ANY(%s) AND organization_id = %s", params)
    by_id = {c.pk: c for c in shown}
    project = judged_as(assignment.project, assignment.item)
    return shown_in_order(project, [by_id[cid] for cid in assignment.display_order])


def shown_in_order(project: Project, candidates: list[Candidate]) -> list[Shown]:
    """The candidates as the page names them, in the order given (the display order)."""
    pairwise = project.mode == Project.Mode.PAIRWISE
    return [
        Shown(
            position,
            f"Response {LETTERS[position - 1] if pairwise else position}",
            candidate,
            render_markdown(candidate.text),
        )
        for position, candidate in enumerate(candidates, start=1)
    ]


def item_totals(project_ids: list[int]) -> dict[int, dict]:
    """Items and wanted judgments per project. They change only when items are built, and
    counting a million items costs tens of milliseconds, so the numbers are cached a minute."""
    keys = {pk: f"chosen:item-totals:{pk}" for pk in project_ids}
    found = cache.get_many(list(keys.values()))
    totals = {pk: found[key] for pk, key in keys.items() if key in found}
    missing = [pk for pk in project_ids if pk not in totals]
    if missing:
        for row in (
            Item.objects.filter(project_id__in=missing)
            .values("project_id")
            # Gold items are served to everyone as checks, beyond any target: the project's
            # progress counts the dataset's items only.
            .annotate(items=Count("id"), wanted=Sum("target_annotations", filter=Q(gold=False)))
        ):
            totals[row["project_id"]] = {"items": row["items"], "wanted": row["wanted"] or 0}
        for pk in missing:
            totals.setdefault(pk, {"items": 0, "wanted": 0})
        cache.set_many({keys[pk]: totals[pk] for pk in missing}, timeout=60)
    return totals


# Written out: on every submit, and the ORM's count cost five times the CPU of the query.
_MINE = """
SELECT count(*) FROM annotation_judgment
WHERE project_id = %s AND annotator_id = %s AND organization_id = %s
"""


def progress(project: Project, annotator) -> dict:
    """This annotator's submitted judgments against their quota (or the project's items):
    the annotate page's "37 of 100". Index-backed, whatever the size of the project."""
    items = item_totals([project.pk])[project.pk]["items"]
    target = project.quota_per_annotator or items
    with connection.cursor() as cursor:
        cursor.execute(_MINE, [project.pk, annotator.pk, project.organization_id])
        (mine,) = cursor.fetchone()
    target = min(target, items) if items else target
    return {
        "mine": mine,
        "mine_target": target,
        "mine_percent": round(100 * mine / target) if target else 0,
    }


def context_for(
    assignment: Assignment,
    *,
    answers: dict | None = None,
    errors: dict | None = None,
    shown: list[Shown] | None = None,
) -> dict:
    """The annotate templates' context for an assignment; ``shown``: its candidates when
    they are not in the database (the question editor's preview)."""
    # A chat turn judged on the annotate page gets the form of its item's mode.
    project = judged_as(assignment.project, assignment.item)
    prompt = assignment.item.prompt
    shown = shown_candidates(assignment) if shown is None else shown
    layout = None
    if project.html_layout and project.mode == Project.Mode.PAIRWISE:
        values = {project.text_key: prompt.text}
        for field, entry in zip(project.candidate_fields, shown, strict=False):
            values[field] = entry.candidate.text
        layout = render_layout(project.html_layout, values)
    return {
        "assignment": assignment,
        "project": project,
        "prompt": prompt,
        "shown": shown,
        "layout": layout,
        "answers": answers or {},
        "errors": errors or {},
        "questions": project.questions,
        **prompt_context(prompt),
    }


def prompt_context(prompt) -> dict:
    """The prompt as the pages show it: a conversation, or one rendered text."""
    return {
        "messages_html": [
            {"role": m["role"], "html": render_markdown(m["content"])}
            for m in prompt.messages or []
        ],
        "prompt_html": render_markdown(prompt.text),
    }


def answers_from_form(project: Project, data) -> dict:
    """The service's answer dict from the annotate form's fields."""
    answers: dict = {}
    for question in project.questions:
        name, kind = question["name"], question["kind"]
        if kind == "preference":
            if project.mode == Project.Mode.PAIRWISE:
                answers[name] = data.get(name)
            elif project.mode == Project.Mode.BEST_WORST:
                answers[name] = {
                    "best": data.get(f"{name}_best"),
                    "worst": data.get(f"{name}_worst"),
                }
            else:
                answers[name] = [p for p in (data.get(f"{name}_ranking") or "").split(",") if p]
        elif kind == "multichoice":
            answers[name] = data.getlist(name)
        elif kind == "rating":
            prefix = f"{name}_"
            answers[name] = {
                k[len(prefix) :]: v for k, v in data.items() if k.startswith(prefix) and v
            }
        else:
            answers[name] = data.get(name, "")
    return answers


def project_rows(projects, annotator) -> list[dict]:
    """The project list: each project with this annotator's and everyone's progress."""
    ids = [p.pk for p in projects]
    mine = dict(
        Judgment.objects.filter(project_id__in=ids, annotator=annotator)
        .values_list("project_id")
        .annotate(n=Count("id"))
    )
    done = dict(
        Judgment.objects.filter(project_id__in=ids, item__gold=False)
        .values_list("project_id")
        .annotate(n=Count("id"))
    )
    items = item_totals(ids)
    rows = []
    for project in projects:
        stats = items.get(project.pk, {"items": 0, "wanted": 0})
        target = project.quota_per_annotator or stats["items"]
        rows.append(
            {
                "project": project,
                "mine": mine.get(project.pk, 0),
                "mine_target": min(target, stats["items"]) if stats["items"] else target,
                "all": done.get(project.pk, 0),
                "all_target": stats["wanted"] or 0,
            }
        )
    for row in rows:
        row["mine_percent"] = (
            round(100 * row["mine"] / row["mine_target"]) if row["mine_target"] else 0
        )
        row["all_percent"] = round(100 * row["all"] / row["all_target"]) if row["all_target"] else 0
    return rows
