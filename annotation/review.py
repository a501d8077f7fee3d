"""The lead's review pages (the disagreement queue, an item with all its judgments, the
discussion and the final decision, gold answers) and the annotator's read-only view of
the discussion of an item they judged."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse

from annotation import adjudication, strength
from annotation.models import Adjudication, ItemNote
from annotation.rendering import render_markdown
from annotation.views import member_project
from annotation.workspace import prompt_context
from tasks.decorators import lead_project, membership_required
from tasks.models import Item, Project
from tasks.schema import strength_levels

PAGE_SIZE = 50


def _item(project: Project, item_id: int) -> Item:
    item = Item.objects.filter(project=project, pk=item_id).select_related("prompt").first()
    if item is None:
        raise Http404("No such item.")
    return item


@membership_required
def queue(request, project_id: int):
    project = lead_project(request, project_id)
    which = request.GET.get("show", "open")
    if which not in adjudication.QUEUES:
        which = "open"
    search = request.GET.get("q", "").strip()[:200]
    items = adjudication.review_queue(project, which, search)
    page = Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    levels = strength_levels(project.preference_question)
    means = strength.mean_by_item(project, [item.pk for item in rows]) if levels else {}
    open_count = (
        page.paginator.count
        if which == "open" and not search
        else adjudication.review_queue(project, "open").count()
    )
    counts = {
        "open": open_count,
        "decided": Adjudication.objects.filter(project=project).count(),
        "gold": Item.objects.filter(project=project, gold=True).count(),
    }
    return render(
        request,
        "annotation/review_queue.html",
        {
            "project": project,
            "page": page,
            "rows": [
                (item, strength.signed_text(means[item.pk]) if item.pk in means else "–")
                for item in rows
            ],
            "strength_levels": levels,
            "which": which,
            "queues": adjudication.QUEUES,
            "counts": counts,
            "search": search,
        },
    )


@membership_required
def item_review(request, project_id: int, item_id: int):
    """GET: the item, every judgment side by side, the discussion, the decision form.
    POST ``action`` = note | decide | gold (leads only, like the page)."""
    project = lead_project(request, project_id)
    item = _item(project, item_id)
    candidates = adjudication.item_candidates(item)
    errors: dict = {}
    form = {}
    if request.method == "POST":
        action, form = request.POST.get("action"), request.POST
        try:
            if action == "note":
                adjudication.add_note(item=item, author=request.user, text=form.get("text"))
                messages.success(request, "Note added.")
                return redirect("annotation:review_item", project_id=project.pk, item_id=item.pk)
            if action == "decide":
                fields = adjudication.parse_decision(item, candidates, form)
                adjudication.decide(item=item, lead=request.user, fields=fields)
                messages.success(request, "Decision saved.")
                following = adjudication.next_open(project, item.pk)
                if following is not None and form.get("then") == "next":
                    return redirect(
                        "annotation:review_item", project_id=project.pk, item_id=following.pk
                    )
                return redirect("annotation:review_item", project_id=project.pk, item_id=item.pk)
            if action == "gold":
                adjudication.set_gold(item, form.get("gold", ""), candidates)
                messages.success(
                    request, "Gold answer saved." if item.gold else "This is no gold item now."
                )
                return redirect("annotation:review_item", project_id=project.pk, item_id=item.pk)
            errors = {"action": ["Unknown action."]}
        except ValidationError as invalid:
            errors = invalid.message_dict
    context = _item_context(project, item, candidates)
    context.update(errors=errors, form=form, following=adjudication.next_open(project, item.pk))
    return render(request, "annotation/review_item.html", context, status=400 if errors else 200)


def _item_context(project: Project, item: Item, candidates) -> dict:
    decision = Adjudication.objects.filter(item=item).select_related("decided_by").first()
    number = {c.pk: i for i, c in enumerate(candidates, start=1)}
    seen = adjudication.judgments_seen(item, candidates)
    graded = strength.item_strength(project, item, [s.judgment for s in seen])
    if graded is not None:
        for s in seen:
            s.signed = strength.signed_text(graded.signed[s.judgment.pk])
    return {
        "project": project,
        "item": item,
        "candidates": [
            {"number": number[c.pk], "candidate": c, "html": render_markdown(c.text)}
            for c in candidates
        ],
        "seen": seen,
        # The item's mean over every judgment: the lead's review page only (an annotator's
        # discussion page shows their own judgment, not the others').
        "strength": graded,
        "strength_summary": graded.summary("Candidate 1", "Candidate 2") if graded else "",
        "notes": ItemNote.objects.filter(item=item).select_related("author"),
        "decision": decision,
        "decision_text": adjudication.describe(decision, item.mode, number) if decision else "",
        "decision_ranks": {number[cid]: rank for rank, cid in enumerate(decision.ranking, start=1)}
        if decision
        else {},
        **prompt_context(item.prompt),
    }


@membership_required
def discussion(request, project_id: int, item_id: int):
    """The discussion and final decision of an item, read-only, for an annotator who judged
    it (when the project shares discussions) and for leads."""
    project = member_project(request, project_id)
    item = _item(project, item_id)
    if not adjudication.may_read_discussion(request.membership, project, item, request.user):
        raise Http404("No discussion to show.")
    candidates = adjudication.item_candidates(item)
    context = _item_context(project, item, candidates)
    context["seen"] = [s for s in context["seen"] if s.judgment.annotator_id == request.user.pk]
    context["review_url"] = (
        reverse("annotation:review_item", args=[project.pk, item.pk])
        if request.membership.manages
        else ""
    )
    return render(request, "annotation/discussion.html", context)
