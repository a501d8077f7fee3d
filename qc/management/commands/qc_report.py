"""The quality report of a project, in the terminal."""

import json as _json

from django.core.management.base import BaseCommand
from django_scopes import scope

from qc.report import compute_report
from tasks.management.refs import project_from_ref


class Command(BaseCommand):
    help = "Print a project's QC report (agreement, annotators, distributions, warnings)."

    def add_arguments(self, parser):
        parser.add_argument("project", help="ORG/PROJECT: organization slug and project name or id")
        parser.add_argument("--json", action="store_true", help="the whole report as JSON")

    def handle(self, *args, project, **options):
        target = project_from_ref(project)
        with scope(organization=target.organization):
            report = compute_report(target)
        if options["json"]:
            self.stdout.write(_json.dumps(report, indent=2, ensure_ascii=False))
            return
        out = self.stdout.write
        coverage = report["coverage"]
        out(
            f"{report['project']['name']}: {report['judgments']} judgments by "
            f"{report['annotators']} annotators; {coverage['complete']} of {coverage['items']} "
            "items fully covered"
        )
        for name, stats in report["agreement"].items():
            shown = ", ".join(f"{k} {v}" for k, v in stats.items() if v is not None)
            out(f"  agreement on {name}: {shown}")
        for person in report["per_annotator"]:
            bias = " POSITION BIAS" if person["position_bias"] else ""
            out(
                f"  {person['annotator']}: {person['judgments']} judgments, median "
                f"{person['median_time_ms']} ms, skip rate {person['skip_rate']}, agreement "
                f"with peers {person['agreement_with_peers']}, left {person['left_share']}{bias}"
            )
        for warning in report["warnings"]:
            out(f"warning: {warning}")
