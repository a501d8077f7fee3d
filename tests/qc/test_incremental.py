"""A QC report carried on from the last one (qc.tally): it reads only the judgments that
changed since, and its figures are exactly those of a report computed from every judgment.
When a judgment the last report counted was edited or deleted, or the items or questions
changed, it reads everything again and says why."""

import random
from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from annotation.models import Judgment
from qc.report import build_report, compute_report
from qc.services import request_report, run_report
from qc.tally import MARGIN
from tasks.models import Item, Role
from tasks.schema import validate_questions
from tests.annotation.test_graded_preference import GradedData, annotators
from tests.conftest import client_for
from tests.factories import member
from tests.qc.test_report import QUESTIONS, Data

pytestmark = pytest.mark.django_db

WITH_A_RATING = validate_questions(
    [*QUESTIONS, {"name": "clarity", "kind": "rating", "scale": {"min": 1, "max": 5}}],
    mode="pairwise",
)
LABELS = ["A1", "A2", "A3", "B1", "B2", "B3", "tie", "both_bad"]


def age(project, hours: float = 1) -> None:
    """Every judgment so far made and last changed in the past, one a minute from ``hours``
    ago, in the order they were made."""
    then = timezone.now() - timedelta(hours=hours)
    with scopes_disabled():
        for n, pk in enumerate(
            Judgment.objects.filter(project=project).order_by("pk").values_list("pk", flat=True)
        ):
            at = then + timedelta(minutes=n)
            Judgment.objects.filter(pk=pk).update(created_at=at, updated_at=at)


def in_the_window(project) -> int:
    """The judgments within MARGIN of the newest: a report cannot know yet whether it saw
    all of those, and the next one reads them again."""
    with scopes_disabled():
        judgments = Judgment.objects.filter(project=project)
        newest = judgments.latest("updated_at").updated_at
        return judgments.filter(updated_at__gt=newest - MARGIN).count()


def same_figures(carried: dict, full: dict) -> None:
    carried, full = dict(carried), dict(full)
    carried.pop("computed"), full.pop("computed")
    assert carried == full


class Plain(Data):
    """The QC tests' project with a rating question too; every judgment rates both
    candidates' clarity, at random."""

    def __init__(self, organization, n_items, overlap=3):
        super().__init__(organization, n_items, overlap)
        with scopes_disabled():
            self.project.questions = WITH_A_RATING
            self.project.save(update_fields=["questions"])
        self.rng = random.Random(7)

    def judge_at_random(self, annotator, n: int) -> None:
        rng = self.rng
        self.judge(
            annotator,
            n,
            rng.choice([0, 1, None]),
            swapped=rng.random() < 0.5,
            dimension=rng.choice(["helpful", "honest"]),
        )
        _, pair = self.items[n]
        with scopes_disabled():
            Judgment.objects.filter(pk=Judgment.objects.latest("pk").pk).update(
                rubric_scores={str(c.pk): {"clarity": rng.randint(1, 5)} for c in pair}
            )


def test_a_refresh_reads_what_changed_and_gives_the_full_reports_figures(acme):
    data = Plain(acme.organization, 30)
    people = [member(acme.organization, Role.ANNOTATOR, email=f"r{i}@x.org") for i in range(4)]
    for n in range(20):  # items 0-19: two judgments each; 20-29 none yet
        for person in data.rng.sample(people, 2):
            data.judge_at_random(person, n)
    age(data.project)
    window = in_the_window(data.project)
    assert 0 < window < 40
    with scope(organization=acme.organization):
        first, tally = build_report(data.project)
        assert first["computed"] == {
            "from_last_report": False,
            "rows_read": 40,
            "reason": "no earlier report to carry on from",
        }
        # A third judgment on items 0-9 (each item's earlier part is taken away and added
        # again), a first one on items 20-24.
        for n in [*range(10), *range(20, 25)]:
            with scopes_disabled():
                done = set(
                    Judgment.objects.filter(item=data.items[n][0]).values_list(
                        "annotator_id", flat=True
                    )
                )
            data.judge_at_random(next(p for p in people if p.pk not in done), n)
        second, tally = build_report(data.project, first, tally)
        full = compute_report(data.project)
    # The 15 new judgments and the window's, then every judgment of the 15 items the new
    # ones touch (20 + 15).
    read = 15 + window + 35
    assert second["computed"] == {"from_last_report": True, "rows_read": read, "reason": ""}
    assert second["judgments"] == 55
    assert second["coverage"]["complete"] == 10
    assert second["agreement"]["clarity"]["units"] > 0
    same_figures(second, full)
    assert second != first

    # Nothing changed since: only the window is read again, the same figures.
    with scope(organization=acme.organization):
        third, _ = build_report(data.project, second, tally)
    assert third["computed"]["from_last_report"]
    assert third["computed"]["rows_read"] == in_the_window(data.project)
    same_figures(third, full)


def test_graded_strength_and_the_kappa_matrices_carry_on_exactly(acme):
    data = GradedData(acme.organization, 24, overlap=3)
    people = annotators(acme.organization, 5)
    rng = random.Random(3)
    plan = [(n, p) for n in range(24) for p in rng.sample(people, 3)]
    rng.shuffle(plan)
    with scope(organization=acme.organization):
        report, tally = None, None
        for step in range(0, len(plan), 18):  # four reports, each after 18 more judgments
            for n, person in plan[step : step + 18]:
                data.judge(person, n, rng.choice(LABELS), swapped=rng.random() < 0.5)
            report, tally = build_report(data.project, report, tally)
            assert report["computed"]["from_last_report"] is (step > 0)
            same_figures(report, compute_report(data.project))
    assert report["judgments"] == 72
    assert "kappa_matrix_strength" in report


def test_a_judgment_that_commits_after_the_report_read_is_counted_by_the_next(acme):
    """A judgment saved before a report read the table but committed after it carries an
    ``updated_at`` before the report's newest: within MARGIN, the next report finds it."""
    data = Data(acme.organization, 4)
    a, b = (member(acme.organization, Role.ANNOTATOR, email=e) for e in ("a@x.org", "b@x.org"))
    data.judge(a, 0, 0)
    data.judge(a, 1, 1)
    with scope(organization=acme.organization):
        first, tally = build_report(data.project)
        data.judge(b, 0, 1)
        with scopes_disabled():
            late = Judgment.objects.latest("pk")
            newest = Judgment.objects.exclude(pk=late.pk).latest("updated_at").updated_at
            Judgment.objects.filter(pk=late.pk).update(
                created_at=newest - MARGIN / 2, updated_at=newest - MARGIN / 2
            )
        second, _ = build_report(data.project, first, tally)
        assert second["computed"]["from_last_report"]
        assert second["judgments"] == 3
        assert second["disagreements"]["disputed_items"] == 1
        same_figures(second, compute_report(data.project))


@pytest.mark.parametrize("change", ["edit", "delete", "target", "questions"])
def test_a_change_to_what_was_counted_reads_everything_again(acme, change):
    data = Data(acme.organization, 6)
    a, b = (member(acme.organization, Role.ANNOTATOR, email=e) for e in ("a@x.org", "b@x.org"))
    for n in range(6):
        data.judge(a, n, 0)
        data.judge(b, n, n % 2)
    age(data.project)
    with scope(organization=acme.organization), scopes_disabled():
        first, tally = build_report(data.project)
        counted = Judgment.objects.filter(project=data.project, annotator=b).order_by("pk")[1]
        if change == "edit":  # as annotation.services.update_judgment leaves it
            Judgment.objects.filter(pk=counted.pk).update(  # now as a judged it
                chosen=F("rejected"),
                rejected=F("chosen"),
                version=F("version") + 1,
                updated_at=timezone.now(),
            )
        elif change == "delete":
            counted.assignment.delete()
        elif change == "target":
            Item.objects.filter(pk=counted.item_id).update(target_annotations=3)
        else:
            data.project.questions = WITH_A_RATING
            data.project.save(update_fields=["questions"])
            data.project.refresh_from_db()
        second, _ = build_report(data.project, first, tally)
        full = compute_report(data.project)
    reason = {
        "edit": "a judgment counted in the last report was edited",
        "delete": "a judgment counted in the last report was deleted",
        "target": "items were added, removed or changed",
        "questions": "the last report's tally is of another set-up",
    }[change]
    assert second["computed"] == {
        "from_last_report": False,
        "rows_read": full["judgments"],
        "reason": reason,
    }
    same_figures(second, full)
    if change in ("edit", "delete"):
        assert second["disagreements"]["disputed_items"] == 2  # item 1 agrees, or is gone
    if change == "target":
        assert second["coverage"]["complete"] == 5


def test_the_job_stores_the_tally_and_the_next_job_carries_it_on(acme):
    data = Data(acme.organization, 4)
    a, b = (member(acme.organization, Role.ANNOTATOR, email=e) for e in ("a@x.org", "b@x.org"))
    lead = member(acme.organization, Role.LEAD)
    data.judge(a, 0, 0)
    data.judge(b, 0, 0, swapped=True)
    age(data.project)
    window = in_the_window(data.project)
    with scope(organization=acme.organization):
        first = run_report(request_report(data.project).pk)
        data.judge(a, 1, 1)
        data.judge(b, 1, 0)
        second = run_report(request_report(data.project).pk)
    assert first.tally["total"] == 2 and second.tally["total"] == 4
    read = window + 2 + 2  # the window, the new judgments, then item 1's
    assert second.data["computed"] == {"from_last_report": True, "rows_read": read, "reason": ""}
    assert second.data["disagreements"]["disputed_items"] == 1
    assert second.data["agreement"]["preference"]["percent_agreement"] == 0.5
    # The tally is the job's own: the API and the downloads show the figures only.
    answer = client_for(lead).get(f"/api/v1/projects/{data.project.pk}/qc-report")
    assert answer.status_code == 200
    assert "tally" not in answer.json() and "watermark" not in answer.content.decode()


def test_a_judgment_that_commits_while_the_refresh_reads_is_left_to_the_next(acme, monkeypatch):
    """Another annotator's submit commits between the refresh's read of what changed and
    its read of the touched items: it is counted in neither place, and the next report
    counts it (as new, once)."""
    import qc.tally

    data = Data(acme.organization, 3)
    a, b, c = (member(acme.organization, Role.ANNOTATOR, email=f"{x}@x.org") for x in "abc")
    data.judge(a, 0, 0)
    age(data.project)
    reads = []
    rows = qc.tally._rows

    def meanwhile(*args):
        reads.append(args)
        if len(reads) == 1:  # after the read of what changed, before the items': it commits
            data.judge(c, 0, 1)
        return rows(*args)

    with scope(organization=acme.organization):
        first, tally = build_report(data.project)
        data.judge(b, 0, 0, swapped=True)
        monkeypatch.setattr(qc.tally, "_rows", meanwhile)
        second, tally = build_report(data.project, first, tally)
        monkeypatch.setattr(qc.tally, "_rows", rows)
        assert second["computed"]["from_last_report"]
        assert second["judgments"] == 2
        assert second["disagreements"]["disputed_items"] == 0
        third, _ = build_report(data.project, second, tally)
        assert third["computed"]["from_last_report"]
        assert third["judgments"] == 3
        assert third["disagreements"]["disputed_items"] == 1
        same_figures(third, compute_report(data.project))
