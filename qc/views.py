"""The QC dashboard of a project, for its leads."""

import csv
import io
import json

from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from qc import charts, services
from qc.judge import judge_agreement
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
    name = f"qc-report-{project.pk}-{report.pk}"
    if fmt == "json":
        response = HttpResponse(
            json.dumps(report.data, indent=2, ensure_ascii=False),
            content_type="application/json",
        )
    else:
        response = HttpResponse(_csv(report.data), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    # A download, never a page: stated here as the export downloads do, whatever the
    # middleware's settings (the report holds names and labels that tenants typed).
    response["X-Content-Type-Options"] = "nosniff"
    services.record_download(report, fmt)
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
