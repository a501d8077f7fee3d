from django.core.management.base import BaseCommand
from django_scopes import scope

from tasks.feedback.verify import build_and_queue
from tasks.management.refs import project_from_ref
from tasks.models import Rule, SignalPair


def counts_table(counts: dict) -> list[str]:
    """The build's counts as lines of text: a rule × status table, then KTO rows and what
    made no pair."""
    statuses = [s for s, _ in SignalPair.Status.choices]
    lines = [f"{'rule':<14}" + "".join(f"{s:>14}" for s in statuses) + f"{'total':>10}"]
    for rule, _ in Rule.choices:
        row = counts["pairs"].get(rule)
        if row:
            cells = "".join(f"{row.get(s, 0):>14,}" for s in statuses)
            lines.append(f"{rule:<14}{cells}{sum(row.values()):>10,}")
    kto = counts["kto"]
    lines.append(f"KTO rows: {kto['desirable']:,} desirable, {kto['undesirable']:,} undesirable")
    skipped = ", ".join(f"{name} {n:,}" for name, n in counts["skipped"].items() if n)
    lines.append(f"No pair or row: {skipped or 'none'}")
    changes = counts["changes"]
    lines.append(
        f"This run: {changes['created']:,} pairs added, {changes['updated']:,} updated, "
        f"{changes['removed']:,} removed"
    )
    return lines


class Command(BaseCommand):
    help = (
        "Build (or rebuild) a project's preference pairs and KTO rows from its feedback "
        "signals; pairs experts have judged are kept as they are."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="ORG/PROJECT: organization slug and project name or id")

    def handle(self, *args, project: str, **options):
        target = project_from_ref(project)
        with scope(organization=target.organization):
            counts = build_and_queue(project=target)
        for line in counts_table(counts):
            self.stdout.write(line)
        self.stdout.write(
            f"{counts['queued']} new verification items"
            + (f" ({counts['not_queued']})" if counts.get("not_queued") else "")
        )
