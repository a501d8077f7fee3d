"""python manage.py export_dataset ORG/PROJECT --format F --out DIR [options]"""

from django.core.management.base import BaseCommand, CommandError
from django_scopes import scope

from exports.pairs import CONVERSATIONS, PAIR_SOURCES, POLICIES, RANKING_PAIRS, Options
from exports.services import ALL_FORMATS as FORMATS
from exports.services import export_to_folder
from tasks.management.refs import project_from_ref


class Command(BaseCommand):
    help = "Export a project's preference pairs, split by prompt, in a training format."

    def add_arguments(self, parser):
        parser.add_argument("project", help="ORG/PROJECT (organization slug; name or id)")
        parser.add_argument("--format", required=True, choices=FORMATS)
        parser.add_argument("--out", required=True, help="folder to create (empty or absent)")
        parser.add_argument("--policy", default="adjudicated", choices=POLICIES)
        parser.add_argument("--min-agreement", type=float, default=0.0)
        parser.add_argument("--best-vs-all", action="store_true")
        parser.add_argument("--ranking-pairs", default="top", choices=RANKING_PAIRS)
        parser.add_argument("--rubric-margin", type=float, default=None)
        parser.add_argument("--dimension", default="", help='"question=value"')
        parser.add_argument("--source", action="append", default=[], dest="sources")
        parser.add_argument("--exclude-truncated", action="store_true")
        parser.add_argument("--near-identical", type=float, default=None)
        parser.add_argument("--exclude-contradictory", action="store_true")
        parser.add_argument(
            "--split", type=float, nargs="+", default=[0.8, 0.2], help="train validation [test]"
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--conversation",
            default="refuse",
            choices=CONVERSATIONS,
            help="trl, kto and csv hold one prompt string: refuse prompts with a system "
            "prompt or earlier turns (default), or write every prompt as a plain transcript",
        )
        parser.add_argument(
            "--csv-raw", action="store_true", help="CSV cells as stored (no formula escaping)"
        )
        parser.add_argument(
            "--pair-source",
            action="append",
            default=[],
            dest="pair_sources",
            choices=PAIR_SOURCES,
            help="only pairs from this source (a pair-builder rule, or human); repeatable",
        )
        parser.add_argument(
            "--min-confidence", type=float, default=0.0, help="only pairs at least this sure"
        )

    def handle(self, *args, **opts):
        project = project_from_ref(opts["project"])
        options = Options(
            policy=opts["policy"],
            min_agreement=opts["min_agreement"],
            best_vs_all=opts["best_vs_all"],
            ranking_pairs=opts["ranking_pairs"],
            rubric_margin=opts["rubric_margin"],
            dimension=opts["dimension"],
            sources=tuple(opts["sources"]),
            exclude_truncated=opts["exclude_truncated"],
            near_identical=opts["near_identical"],
            exclude_contradictory=opts["exclude_contradictory"],
            ratios=tuple(opts["split"]),
            seed=opts["seed"],
            conversation=opts["conversation"],
            csv_raw=opts["csv_raw"],
            pair_sources=tuple(opts["pair_sources"]),
            min_confidence=opts["min_confidence"],
        )
        if options.problems():
            raise CommandError("; ".join(options.problems()))
        try:
            with scope(organization=project.organization):
                manifest = export_to_folder(project, opts["format"], opts["out"], options)
        except (FileExistsError, ValueError) as refused:
            raise CommandError(str(refused)) from refused
        for entry in manifest["files"]:
            self.stdout.write(f"{entry['name']}\t{entry['rows']} rows\tsha256 {entry['sha256']}")
        counts = ", ".join(f"{k} {v}" for k, v in manifest["counts"].items()) or "no pairs"
        self.stdout.write(f"{counts} → {opts['out']}")
