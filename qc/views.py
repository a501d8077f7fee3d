"""The QC dashboard and the leaderboard of a project, and the organization's leaderboard,
for its leads."""

import csv
import io
import json

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from qc import charts, services
from qc.judge import judge_agreement
from qc.models import Leaderboard
from tasks.csvsafe import spreadsheet_value
from tasks.decorators import lead_project, membership_required


@membership_required
def dashboard(request, project_id: int):
    project = lead_project(request, project_id)
    reports = services.reports_of(project)
    report = reports.shown
    context = {
        "project": project,
        "report": report,
        "failed": reports.failed,
        "pending": reports.pending,
        "judge": judge_agreement(project),
    }
    if report is not None:
        data = report.data
        context.update(
            data=data,
            heatmap=charts.heatmap(
                data["kappa_matrix"]["annotators"], data["kappa_matrix"]["values"]
            ),
            # Graded preference: linear-weighted kappa on the signed strength (older
            # reports and ungraded projects have none).
            strength_heatmap=charts.heatmap(
                data["kappa_matrix_strength"]["annotators"],
                data["kappa_matrix_strength"]["values"],
                "Linear-weighted kappa on the signed strength",
            )
            if data.get("kappa_matrix_strength")
            else "",
            label_chart=charts.bars(data["labels"], "Labels"),
            answer_charts=[
                (name, charts.bars(counts, f"Answers to {name}"))
                for name, counts in data.get("answers", {}).items()
            ],
            dimension_charts=[
                (name, value, charts.bars(counts, f"Labels when {name} is {value}"))
                for name, table in data["labels_by_answer"].items()
                for value, counts in table.items()
            ],
            load_chart=charts.bars(
                {p["annotator"]: p["judgments"] for p in data["per_annotator"]},
                "Judgments per annotator",
            ),
            timeline=charts.timeline(data["judgments_per_day"]),
        )
    return render(request, "qc/dashboard.html", context)


@membership_required
@require_POST
def recompute(request, project_id: int):
    project = lead_project(request, project_id)
    services.request_report(project, created_by=request.user)
    return redirect("qc:dashboard", project_id=project.pk)


@membership_required
def download(request, project_id: int, fmt: str):
    """The latest report as JSON (all of it) or CSV (a row per annotator, then agreement)."""
    project = lead_project(request, project_id)
    report = services.latest(project)
    if report is None:
        raise Http404("No QC report yet.")
    response = _attachment(report.data, _csv, f"qc-report-{project.pk}-{report.pk}", fmt)
    services.record_download(report, fmt)
    return response


def _attachment(data: dict, to_csv, name: str, fmt: str) -> HttpResponse:
    """Stored figures as a download: all of them as JSON, or ``to_csv(data)``."""
    if fmt == "json":
        response = HttpResponse(
            json.dumps(data, indent=2, ensure_ascii=False), content_type="application/json"
        )
    else:
        response = HttpResponse(to_csv(data), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    # A download, never a page: stated here as the export downloads do, whatever the
    # middleware's settings (reports and leaderboards hold names that tenants typed).
    response["X-Content-Type-Options"] = "nosniff"
    return response


PEOPLE_COLUMNS = [
    "annotator",
    "judgments",
    "share_of_judgments",
    "median_time_ms",
    "skip_rate",
    "agreement_with_peers",
    "left_share",
    "position_bias_p_value",
    "position_bias",
    "gold_judgments",
    "gold_correct",
    "gold_accuracy",
]


def _csv(data: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(PEOPLE_COLUMNS)
    for person in data["per_annotator"]:
        writer.writerow([spreadsheet_value(person.get(c)) for c in PEOPLE_COLUMNS])
    writer.writerow([])
    writer.writerow(["question", "statistic", "value"])
    for question, stats in data["agreement"].items():
        for statistic, value in stats.items():
            writer.writerow([spreadsheet_value(question), statistic, value])
    return out.getvalue()


# Leaderboards: a project's (its leads) and the organization's across its projects (leads
# and admins). project_id None is the organization's.


def _leader_scope(request, project_id: int | None):
    """The project (404 for another organization's), or None for the organization's
    leaderboard; either way only leads and admins pass."""
    if project_id is not None:
        return lead_project(request, project_id)
    if not request.membership.manages:
        raise PermissionDenied("This page is for project leads.")
    return None


def _leaderboard_url(project):
    if project is None:
        return "qc:organization_leaderboard", {}
    return "qc:leaderboard", {"project_id": project.pk}


@membership_required
def leaderboard(request, project_id: int | None = None):
    project = _leader_scope(request, project_id)
    boards = services.leaderboards_of(request.organization, project)
    board = boards.shown
    context = {
        "project": project,
        "board": board,
        "failed": boards.failed,
        "pending": boards.pending,
        "kinds": Leaderboard.SourceKind.choices,
        "chosen_kind": board.source_kind if board else Leaderboard.SourceKind.MODEL,
    }
    if board is not None:
        data = board.data
        context.update(
            data=data,
            strength_chart=charts.strengths(data["sources"]) if data["sources"] else None,
            win_chart=charts.win_rates(data["win_rate"]["sources"], data["win_rate"]["values"])
            if data["sources"]
            else None,
            length_chart=charts.strengths(
                data["length_control"]["sources"], "Rating with length held equal"
            )
            if data.get("length_control")
            else None,
        )
    return render(request, "qc/leaderboard.html", context)


@membership_required
@require_POST
def compute_leaderboard(request, project_id: int | None = None):
    project = _leader_scope(request, project_id)
    kind = request.POST.get("source_kind", Leaderboard.SourceKind.MODEL)
    if kind not in Leaderboard.SourceKind.values:
        kind = Leaderboard.SourceKind.MODEL
    services.request_leaderboard(
        organization=request.organization,
        project=project,
        source_kind=kind,
        length_control=request.POST.get("length_control") == "on",
        created_by=request.user,
    )
    name, kwargs = _leaderboard_url(project)
    return redirect(name, **kwargs)


LEADERBOARD_COLUMNS = [
    "rank",
    "source",
    "rating",
    "lower",
    "upper",
    "strength",
    "battles",
    "wins",
    "ties",
    "losses",
    "win_rate",
]


@membership_required
def download_leaderboard(request, fmt: str, project_id: int | None = None):
    """The newest leaderboard as JSON (all of it) or CSV (a row per source, then the
    win-rate matrix)."""
    project = _leader_scope(request, project_id)
    board = services.leaderboards_of(request.organization, project).shown
    if board is None:
        raise Http404("No leaderboard yet.")
    name = f"leaderboard-{project.pk if project else 'organization'}-{board.pk}"
    response = _attachment(board.data, _leaderboard_csv, name, fmt)
    services.record_leaderboard_download(board, fmt)
    return response


def _leaderboard_csv(data: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(LEADERBOARD_COLUMNS)
    for source in data["sources"]:
        writer.writerow([spreadsheet_value(source.get(c)) for c in LEADERBOARD_COLUMNS])
    writer.writerow([])
    names = data["win_rate"]["sources"]
    writer.writerow(["win rate (row vs column)", *(spreadsheet_value(n) for n in names)])
    for name, values in zip(names, data["win_rate"]["values"], strict=True):
        writer.writerow([spreadsheet_value(name), *("" if v is None else v for v in values)])
    return out.getvalue()
