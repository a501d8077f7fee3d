"""python manage.py export_dataset ORG/PROJECT --format F --out DIR [options]
python manage.py export_dataset ORG/PROJECT --format F --preview [options]: the figures only"""

import json

from django.core.management.base import BaseCommand, CommandError
from django_scopes import scope

from exports.binarize import RULES, SCORES_FROM
from exports.pairs import (
    CONVERSATIONS,
    PAIR_SOURCES,
    POLICIES,
    RANKING_PAIRS,
    Options,
    check,
)
from exports.preview import preview
from exports.services import ALL_FORMATS as FORMATS
from exports.services import export_to_folder
from tasks.management.refs import project_from_ref


class Command(BaseCommand):
    help = "Export a project's preference pairs, split by prompt, in a training format."

    def add_arguments(self, parser):
        parser.add_argument("project", help="ORG/PROJECT (organization slug; name or id)")
        parser.add_argument("--format", required=True, choices=FORMATS)
        parser.add_argument("--out", help="folder to create (empty or absent)")
        parser.add_argument(
            "--preview",
            action="store_true",
            help="print the pair count, prompts kept, length difference and position bias "
            "as JSON, and write nothing",
        )
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
        parser.add_argument(
            "--binarize",
            default="",
            choices=("", *RULES),
            help="pairs from a score per candidate by this rule (default: as judged)",
        )
        parser.add_argument("--scores-from", default="order", choices=SCORES_FROM)
        parser.add_argument(
            "--aspect-weights", default="", help='"aspect=weight,…" (with --scores-from aspects)'
        )
        parser.add_argument("--min-margin", type=float, default=0.0)
        parser.add_argument("--keep-ties", action="store_true", help="equal scores make a pair")
        parser.add_argument(
            "--max-pairs-per-prompt", type=int, default=0, help="k largest margins (0: all)"
        )
        parser.add_argument("--score-columns", action="store_true", help="margin and score columns")

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
            binarize=opts["binarize"],
            scores_from=opts["scores_from"],
            aspect_weights=opts["aspect_weights"],
            min_margin=opts["min_margin"],
            keep_ties=opts["keep_ties"],
            max_pairs_per_prompt=opts["max_pairs_per_prompt"],
            score_columns=opts["score_columns"],
        )
        if not opts["preview"] and not opts["out"]:
            raise CommandError("give --out (the folder to write) or --preview")
        try:
            with scope(organization=project.organization):
                check(project, options)
                if opts["preview"]:
                    self.stdout.write(json.dumps(preview(project, options), indent=2))
                    return
                manifest = export_to_folder(project, opts["format"], opts["out"], options)
        except (FileExistsError, ValueError) as refused:
            raise CommandError(str(refused)) from refused
        for entry in manifest["files"]:
            self.stdout.write(f"{entry['name']}\t{entry['rows']} rows\tsha256 {entry['sha256']}")
        counts = ", ".join(f"{k} {v}" for k, v in manifest["counts"].items()) or "no pairs"
        self.stdout.write(f"{counts} → {opts['out']}")
