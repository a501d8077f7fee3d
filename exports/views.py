"""The lead's export page: start an export, follow it, download its files."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render

from exports import services
from exports.api.views import file_response
from exports.binarize import RULES
from exports.card import RULE_NOTES, SOURCE_NOTES
from exports.models import Export
from exports.pairs import PAIR_SOURCES, POLICIES
from exports.preview import preview
from tasks.decorators import lead_project, membership_required

# How trl, kto and csv (one prompt string) treat a prompt with a system prompt or turns.
CONVERSATION_CHOICES = {
    "refuse": "refuse the export (use a format that keeps them)",
    "transcript": "write every prompt as a plain transcript",
}
SPLITS = {
    "80/20": (0.8, 0.2),
    "70/30": (0.7, 0.3),
    "85/15": (0.85, 0.15),
    "80/10/10": (0.8, 0.1, 0.1),
}


def _options(form) -> dict:
    """Options from the page's form fields."""

    def number(name):
        value = (form.get(name) or "").strip()
        return float(value) if value else None

    options = {
        "policy": form.get("policy", "adjudicated"),
        "min_agreement": number("min_agreement") or 0.0,
        "ratios": SPLITS.get(form.get("split", "80/20"), (0.8, 0.2)),
        "seed": int(number("seed") or 0),
        "best_vs_all": form.get("best_vs_all") == "on",
        "exclude_truncated": form.get("exclude_truncated") == "on",
        "exclude_contradictory": form.get("exclude_contradictory") == "on",
        "dimension": (form.get("dimension") or "").strip(),
        "conversation": form.get("conversation", "refuse"),
        "csv_raw": form.get("csv_raw") == "on",
        "pair_sources": form.getlist("pair_sources"),
        "min_confidence": number("min_confidence") or 0.0,
        "binarize": form.get("binarize", ""),
        "scores_from": form.get("scores_from", "order"),
        "aspect_weights": (form.get("aspect_weights") or "").strip(),
        "min_margin": number("min_margin") or 0.0,
        "keep_ties": form.get("keep_ties") == "on",
        "max_pairs_per_prompt": int(number("max_pairs_per_prompt") or 0),
        "score_columns": form.get("score_columns") == "on",
    }
    if number("near_identical") is not None:
        options["near_identical"] = number("near_identical")
    if number("rubric_margin") is not None:
        options["rubric_margin"] = number("rubric_margin")
    return options


@membership_required
def exports_page(request, project_id: int):
    project = lead_project(request, project_id)
    errors, figures = [], None
    if request.method == "POST":
        try:
            options = services.options_from(_options(request.POST))
            if request.POST.get("action") == "preview":  # the figures only, nothing written
                figures = preview(project, options)
            else:
                services.request_export(
                    project, request.POST.get("format", ""), options, created_by=request.user
                )
                messages.success(request, "Export queued.")
                return redirect("exports:page", project_id=project.pk)
        except ValueError as wrong:
            errors.append(str(wrong))
    exports = Export.objects.filter(project=project).order_by("-created_at")[:50]
    running = next((e for e in exports if not e.finished), None)
    return render(
        request,
        "exports/exports.html",
        {
            "project": project,
            "exports": exports,
            "running": running,
            "formats": services.ALL_FORMATS,
            "policies": POLICIES,
            "splits": SPLITS,
            "conversations": CONVERSATION_CHOICES,
            "pair_sources": {name: SOURCE_NOTES[name] for name in PAIR_SOURCES},
            "chosen_sources": request.POST.getlist("pair_sources"),
            "errors": errors,
            "form": request.POST,
            "rules": {name: RULE_NOTES[name] for name in RULES},
            "preview": figures,
        },
        status=400 if errors else 200,
    )


@membership_required
def download(request, project_id: int, export_id: int, name: str):
    project = lead_project(request, project_id)
    export = Export.objects.filter(project=project, pk=export_id).first()
    if export is None:
        raise Http404("No such export.")
    return file_response(export, name)
