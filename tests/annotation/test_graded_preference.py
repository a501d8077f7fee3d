"""Graded preference end to end below the browser: a graded label's strength is stored,
signed towards the item's first candidate whatever order the annotator saw, shown in review
with the item's mean, and given by the API."""

import pytest
from django_scopes import scopes_disabled

from annotation.models import Assignment, Judgment
from annotation.services import submit_judgment
from annotation.strength import in_words, judgment_signed_strength, signed_strength, signed_text
from tasks.models import ItemCandidate, Role
from tasks.project_templates import DPO_GRADED
from tests.conftest import client_for
from tests.factories import member
from tests.qc.test_report import Data

pytestmark = pytest.mark.django_db


class GradedData(Data):
    """The QC tests' project of n pairwise items (``tests.qc.test_report.Data``) with the
    graded template's questions and the items' slots; ``judge`` submits a label through the
    annotator's service, with the candidates shown in either order."""

    def __init__(self, organization, n_items: int, overlap: int = 3):
        super().__init__(organization, n_items, overlap)
        with scopes_disabled():
            self.project.questions = DPO_GRADED.questions
            self.project.save(update_fields=["questions"])
            for item, pair in self.items:
                for position, candidate in enumerate(pair):
                    ItemCandidate.objects.create(item=item, candidate=candidate, position=position)

    def judge(self, annotator, n: int, value: str, *, swapped: bool = False) -> Judgment:
        """Submit the label ``value`` ("A2", "B1", "tie", "both_bad") as seen on screen; with
        ``swapped`` the item's second candidate is Response A."""
        item, pair = self.items[n]
        order = [pair[1].pk, pair[0].pk] if swapped else [pair[0].pk, pair[1].pk]
        with scopes_disabled():
            assignment = Assignment.objects.create(
                organization=self.organization,
                project=self.project,
                item=item,
                annotator=annotator,
                display_order=order,
                expires_at="2030-01-01T00:00:00Z",
            )
            return submit_judgment(
                project=self.project,
                assignment_id=assignment.pk,
                annotator=annotator,
                answers={"preference": value, "reasoning": ""},
            )

    def signed(self, judgment: Judgment) -> int | None:
        with scopes_disabled():
            return judgment_signed_strength(judgment)


def annotators(organization, n: int):
    return [member(organization, Role.ANNOTATOR, email=f"g{i}@x.org") for i in range(n)]


def test_the_strength_is_signed_by_the_items_order_not_the_screens(acme):
    data = GradedData(acme.organization, 1, overlap=6)
    people = annotators(acme.organization, 6)
    _, (first, second) = data.items[0]
    # "A better" (strength 2) on screen: the item's first candidate when shown as A, its
    # second when the screen order was swapped.
    straight = data.judge(people[0], 0, "A2")
    swapped = data.judge(people[1], 0, "A2", swapped=True)
    assert (straight.chosen_id, straight.strength) == (first.pk, 2)
    assert (swapped.chosen_id, swapped.strength) == (second.pk, 2)
    assert data.signed(straight) == 2
    assert data.signed(swapped) == -2
    # "B much better" seen swapped is the first candidate, much better.
    assert data.signed(data.judge(people[2], 0, "B3", swapped=True)) == 3
    assert data.signed(data.judge(people[3], 0, "B1")) == -1
    assert data.signed(data.judge(people[4], 0, "tie")) == 0
    assert data.signed(data.judge(people[5], 0, "both_bad")) is None


def test_a_judgment_without_strength_has_no_signed_strength():
    assert signed_strength(outcome="preferred", chosen_id=1, strength=None, first_id=1) is None
    assert signed_strength(outcome="ranked", chosen_id=1, strength=2, first_id=1) is None


def test_strengths_read_as_words():
    assert in_words(-5 / 3, 3, "Candidate 1", "Candidate 2") == "Candidate 2 clearly better"
    assert in_words(0.4, 3) == "about equal"
    assert in_words(2.6, 3) == "A much better"
    assert in_words(-2, 5) == "B better by 2 of 5"
    assert signed_text(-5 / 3) == "\u22121.7" and signed_text(2) == "+2"


def test_review_shows_each_strength_and_the_items_mean(acme):
    data = GradedData(acme.organization, 2)
    a, b, c = annotators(acme.organization, 3)
    item, _ = data.items[0]
    data.judge(a, 0, "B2")  # -2
    data.judge(b, 0, "A2", swapped=True)  # the second candidate, clearly: -2
    data.judge(c, 0, "B1")  # -1
    data.judge(a, 1, "A3")  # item 1: +3 and a tie, disputed too
    data.judge(b, 1, "tie")
    lead = client_for(acme.lead)

    page = lead.get(f"/projects/{data.project.pk}/review/{item.pk}/").content.decode()
    assert "Candidate 2 clearly better, mean \u22121.7 of 3 (3 judgments)" in page
    assert page.count("Strength: 2 of 3 · signed \u22122") == 2
    assert "Strength: 1 of 3 · signed \u22121" in page
    assert "Label: B better" in page and "Label: A better" in page

    queue = lead.get(f"/projects/{data.project.pk}/review/?show=all").content.decode()
    assert "Mean strength" in queue
    assert "\u22121.7 of 3" in queue and "+1.5 of 3" in queue


def test_review_of_an_ungraded_project_says_nothing_of_strength(acme):
    data = Data(acme.organization, 1)
    a, b = annotators(acme.organization, 2)
    data.judge(a, 0, 0)
    data.judge(b, 0, 1)
    lead = client_for(acme.lead)
    item, _ = data.items[0]
    page = lead.get(f"/projects/{data.project.pk}/review/{item.pk}/").content.decode()
    assert "Graded preference" not in page and "Strength:" not in page
    queue = lead.get(f"/projects/{data.project.pk}/review/").content.decode()
    assert "Mean strength" not in queue


def test_api_gives_the_signed_strength_beside_the_strength(acme):
    data = GradedData(acme.organization, 1)
    a, b = annotators(acme.organization, 2)
    data.judge(a, 0, "A1", swapped=True)
    data.judge(b, 0, "tie")
    body = client_for(acme.lead).get(f"/api/v1/projects/{data.project.pk}/judgments/").json()
    rows = {row["annotator"]: row for row in body["results"]}
    assert (rows["g0@x.org"]["strength"], rows["g0@x.org"]["signed_strength"]) == (1, -1)
    assert (rows["g1@x.org"]["strength"], rows["g1@x.org"]["signed_strength"]) == (None, 0)


def test_api_of_an_ungraded_project_gives_no_signed_strength(acme):
    data = Data(acme.organization, 1)
    a, _ = annotators(acme.organization, 2)
    data.judge(a, 0, None)  # a tie: 0 only where the project asks for strength
    body = client_for(acme.lead).get(f"/api/v1/projects/{data.project.pk}/judgments/").json()
    assert [row["signed_strength"] for row in body["results"]] == [None]
