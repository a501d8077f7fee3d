"""Disagreements, the lead's final decision, the discussion and gold items."""

from collections import Counter

import pytest
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from annotation.adjudication import review_queue
from annotation.allocator import gold_due
from annotation.models import Adjudication, Assignment, ItemNote, Judgment
from qc.report import compute_report
from tasks.models import Item, Project, Role
from tests.annotation.test_allocator import allocate, project_with_items, submit
from tests.factories import ProjectFactory, member
from tests.qc.test_report import QUESTIONS, Data
from tests.tasks.test_prompt_import import jsonl, row, run

pytestmark = pytest.mark.django_db


@pytest.fixture
def disputed(acme):
    """Three items judged by two annotators: item 0 agreed (b saw the order swapped), item 1
    split between the two candidates, item 2 a preference against a tie."""
    data = Data(acme.organization, 3)
    a, b = (member(acme.organization, Role.ANNOTATOR, email=e) for e in ("a@x.org", "b@x.org"))
    data.judge(a, 0, 0)
    data.judge(b, 0, 0, swapped=True)
    data.judge(a, 1, 0)
    data.judge(b, 1, 1)
    data.judge(a, 2, 1)
    data.judge(b, 2, None)
    with scopes_disabled():
        Judgment.objects.filter(annotator=b, item=data.items[1][0]).update(
            reasoning='Second is safer <img src=x onerror="window.__xss=1">'
        )
    data.a, data.b = a, b
    return data


def page(client, url, **params):
    response = client.get(url, params)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def test_the_queue_lists_the_items_whose_judgments_differ(disputed, acme, as_user):
    with scope(organization=acme.organization):
        open_ids = [item.pk for item in review_queue(disputed.project, "open")]
    assert open_ids == [disputed.items[1][0].pk, disputed.items[2][0].pk]
    html = page(as_user(acme.lead), reverse("annotation:review", args=[disputed.project.pk]))
    assert f'data-item="{disputed.items[1][0].pk}"' in html
    assert f'data-item="{disputed.items[0][0].pk}"' not in html  # agreed: not disputed
    url = reverse("annotation:review", args=[disputed.project.pk])
    assert as_user(acme.annotator).get(url).status_code == 403


def test_the_lead_sees_every_judgment_with_its_reasoning_escaped(disputed, acme, as_user):
    item, pair = disputed.items[1]
    url = reverse("annotation:review_item", args=[disputed.project.pk, item.pk])
    html = page(as_user(acme.lead), url)
    assert html.count('class="judgment-card"') == 2
    assert "Candidate 1 over 2" in html and "Candidate 2 over 1" in html
    assert "Second is safer &lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;" in html
    assert "<img src=x" not in html


def test_a_decision_needs_a_note_and_then_settles_the_item(disputed, acme, as_user):
    item, pair = disputed.items[1]
    lead = as_user(acme.lead)
    url = reverse("annotation:review_item", args=[disputed.project.pk, item.pk])
    refused = lead.post(url, {"action": "decide", "decision": pair[1].pk, "note": "  "})
    assert refused.status_code == 400 and "Say why" in refused.content.decode()
    with scopes_disabled():
        assert not Adjudication.objects.exists()

    lead.post(url, {"action": "note", "text": "B is right: the first leaks the address."})
    saved = lead.post(
        url,
        {"action": "decide", "decision": pair[1].pk, "note": "Privacy first.", "then": "next"},
    )
    # "then next" goes on to the next open disagreement
    assert saved.status_code == 302
    assert saved["Location"].endswith(f"/review/{disputed.items[2][0].pk}/")
    with scopes_disabled():
        decision = Adjudication.objects.get(item=item)
        assert (decision.outcome, decision.chosen_id, decision.rejected_id) == (
            "preferred",
            pair[1].pk,
            pair[0].pk,
        )
        assert decision.note == "Privacy first." and decision.decided_by == acme.lead
        assert ItemNote.objects.get(item=item).author == acme.lead
    with scope(organization=acme.organization):
        assert [i.pk for i in review_queue(disputed.project, "open")] == [disputed.items[2][0].pk]
        assert [i.pk for i in review_queue(disputed.project, "decided")] == [item.pk]

    # a second decision replaces the first; a tie is a decision too
    lead.post(url, {"action": "decide", "decision": "tie", "note": "On reflection, equal."})
    with scopes_disabled():
        decision = Adjudication.objects.get(item=item)
        assert (decision.outcome, decision.chosen_id) == ("tie", None)
    html = page(lead, url)
    assert "Tie" in html and "On reflection, equal." in html


def test_a_decision_must_name_a_candidate_of_the_item(disputed, acme, as_user):
    item, _ = disputed.items[1]
    other = disputed.items[0][1][0]
    url = reverse("annotation:review_item", args=[disputed.project.pk, item.pk])
    response = as_user(acme.lead).post(url, {"action": "decide", "decision": other.pk, "note": "x"})
    assert response.status_code == 400
    with scopes_disabled():
        assert not Adjudication.objects.exists()


def test_annotators_may_not_decide_or_write_notes(disputed, acme, as_user):
    item, pair = disputed.items[1]
    url = reverse("annotation:review_item", args=[disputed.project.pk, item.pk])
    client = as_user(disputed.a)
    assert client.post(url, {"action": "note", "text": "mine"}).status_code == 403
    assert (
        client.post(url, {"action": "decide", "decision": pair[0].pk, "note": "x"}).status_code
        == 403
    )
    with scopes_disabled():
        assert not ItemNote.objects.exists() and not Adjudication.objects.exists()


def test_annotators_read_the_discussion_only_when_the_project_shares_it(disputed, acme, as_user):
    item, pair = disputed.items[1]
    lead = as_user(acme.lead)
    review = reverse("annotation:review_item", args=[disputed.project.pk, item.pk])
    lead.post(review, {"action": "note", "text": "Look at the second paragraph."})
    lead.post(review, {"action": "decide", "decision": pair[1].pk, "note": "Privacy first."})
    url = reverse("annotation:discussion", args=[disputed.project.pk, item.pk])
    history = reverse("annotation:history", args=[disputed.project.pk])
    annotator = as_user(disputed.a)
    assert annotator.get(url).status_code == 404
    assert 'class="discussion-link"' not in page(annotator, history)

    with scopes_disabled():
        Project.objects.filter(pk=disputed.project.pk).update(discussion_visible_to_annotators=True)
    html = page(annotator, url)
    assert "Look at the second paragraph." in html and "Privacy first." in html
    assert "Candidate 2 over 1" in html  # the decision
    assert html.count('id="your-judgment"') == 1 and "Candidate 1 over 2" in html  # theirs only
    assert url in page(annotator, history)
    # someone who did not judge the item sees nothing
    assert as_user(acme.annotator).get(url).status_code == 404


def test_best_worst_and_ranking_decisions(acme, as_user):
    for mode, form, expected in [
        ("best_worst", lambda ids: {"best": ids[2], "worst": ids[0]}, lambda ids: (2, 0, [])),
        (
            "ranking",
            lambda ids: {f"rank_{ids[0]}": 2, f"rank_{ids[1]}": 3, f"rank_{ids[2]}": 1},
            lambda ids: (2, 1, [ids[2], ids[0], ids[1]]),
        ),
    ]:
        project = ProjectFactory(organization=acme.organization, mode=mode, name=mode)
        run(project, {"d.jsonl": jsonl(row(1, response_c="A third answer."))})
        with scopes_disabled():
            item = Item.objects.get(project=project)
            ids = [int(x) for x in item.candidate_key.split("-")]
        url = reverse("annotation:review_item", args=[project.pk, item.pk])
        response = as_user(acme.lead).post(url, {"action": "decide", "note": "n", **form(ids)})
        assert response.status_code == 302, response.content.decode()[:2000]
        best, worst, ranking = expected(ids)
        with scopes_disabled():
            decision = Adjudication.objects.get(item=item)
        assert (decision.outcome, decision.chosen_id, decision.rejected_id) == (
            "ranked",
            ids[best],
            ids[worst],
        )
        assert decision.ranking == ranking
        bad = {"best": ids[0], "worst": ids[0]} if mode == "best_worst" else {f"rank_{ids[0]}": 1}
        refused = as_user(acme.lead).post(url, {"action": "decide", "note": "n", **bad})
        assert refused.status_code == 400


# --- gold items --------------------------------------------------------------------------


def gold_project(organization, regular: int, gold: int, rate: int, overlap: int = 1):
    """A project with ``regular`` + ``gold`` items; the first ``gold`` are gold items."""
    project = project_with_items(
        organization, regular + gold, gold_rate_percent=rate, annotations_per_item=overlap
    )
    with scopes_disabled():
        items = list(Item.objects.filter(project=project).order_by("id"))
        for item in items[:gold]:
            item.gold, item.gold_outcome = True, "preferred"
            item.gold_chosen_id = int(item.candidate_key.split("-")[0])
            item.save()
    return project, {item.pk for item in items[:gold]}


def drain(project, annotator) -> list[int]:
    """Every item this annotator gets, in order (each judged "Response A is better")."""
    got = []
    while (allocation := allocate(project, annotator)).assignment:
        got.append(allocation.assignment.item_id)
        submit(project, annotator, allocation.assignment)
    return got


def test_gold_items_come_at_the_projects_rate_and_once_per_person(acme):
    project, gold = gold_project(acme.organization, regular=40, gold=12, rate=20, overlap=2)
    annotators = [member(acme.organization, Role.ANNOTATOR) for _ in range(2)]
    for annotator in annotators:
        got = drain(project, annotator)
        assert len(got) == len(set(got))  # never the same item twice
        served = [item in gold for item in got]
        # 40 regular items in blocks of five with one gold item each; after the last regular
        # item, at most the gold item of the next block
        assert sum(not g for g in served) == 40 and served.count(True) in (10, 11)
        for block in range(0, 50, 5):
            assert served[block : block + 5].count(True) == 1, (block, served)
    # gold items are not bound by the overlap target: both annotators got ten of them
    with scopes_disabled():
        per_item = Counter(
            Assignment.objects.filter(item_id__in=gold).values_list("item_id", flat=True)
        )
    assert 20 <= sum(per_item.values()) <= 22 and max(per_item.values()) == 2


def test_without_a_rate_gold_items_are_not_served(acme):
    project, gold = gold_project(acme.organization, regular=5, gold=2, rate=0)
    got = drain(project, acme.annotator)
    assert len(got) == 5 and not set(got) & gold


def test_gold_that_runs_out_is_owed_not_repeated(acme):
    project, gold = gold_project(acme.organization, regular=10, gold=1, rate=50)
    got = drain(project, acme.annotator)
    assert len(got) == 11 and sum(item in gold for item in got) == 1
    with scope(organization=acme.organization):
        assert gold_due(project, acme.annotator)  # still owed; nothing left to give


# The careless annotator listed last, and first: each is warned about once, whatever the
# order (the warning was once given only to whoever came last, once per label).
@pytest.mark.parametrize("sloppy", ["sloppy@x.org", "a-sloppy@x.org"])
def test_the_lead_marks_gold_items_and_the_report_scores_them(acme, as_user, sloppy):
    data = Data(acme.organization, 6, overlap=2)
    careful = member(acme.organization, Role.ANNOTATOR, email="careful@x.org")
    careless = member(acme.organization, Role.ANNOTATOR, email=sloppy)
    lead = as_user(acme.lead)
    for n, (item, pair) in enumerate(data.items):
        url = reverse("annotation:review_item", args=[data.project.pk, item.pk])
        response = lead.post(url, {"action": "gold", "gold": pair[n % 2].pk})
        assert response.status_code == 302
        data.judge(careful, n, n % 2)
        data.judge(careless, n, 0 if n < 5 else None)  # right on 0, 2, 4; wrong on 1, 3, 5
    with scope(organization=acme.organization):
        report = compute_report(data.project)
    people = {p["annotator"]: p for p in report["per_annotator"]}
    assert (people["careful@x.org"]["gold_correct"], people["careful@x.org"]["gold_accuracy"]) == (
        6,
        1.0,
    )
    assert people[sloppy]["gold_judgments"] == 6
    assert people[sloppy]["gold_accuracy"] == 0.5
    warned = [w for w in report["warnings"] if f"{sloppy} answered 50% of 6 gold items" in w]
    assert len(warned) == 1
    assert not any("careful@x.org answered" in w for w in report["warnings"])
    # and back to an ordinary item
    item = data.items[0][0]
    url = reverse("annotation:review_item", args=[data.project.pk, item.pk])
    assert lead.post(url, {"action": "gold", "gold": ""}).status_code == 302
    with scopes_disabled():
        item.refresh_from_db()
    assert (item.gold, item.gold_outcome, item.gold_chosen_id) == (False, "", None)


def test_a_gold_answer_must_be_a_candidate_of_the_item(acme, as_user):
    data = Data(acme.organization, 2)
    item = data.items[0][0]
    url = reverse("annotation:review_item", args=[data.project.pk, item.pk])
    response = as_user(acme.lead).post(url, {"action": "gold", "gold": data.items[1][1][0].pk})
    assert response.status_code == 400
    with scopes_disabled():
        assert not Item.objects.filter(gold=True).exists()


def test_the_report_counts_disputes_and_decisions(disputed, acme, as_user):
    item, pair = disputed.items[1]
    url = reverse("annotation:review_item", args=[disputed.project.pk, item.pk])
    as_user(acme.lead).post(url, {"action": "decide", "decision": pair[0].pk, "note": "n"})
    with scope(organization=acme.organization):
        report = compute_report(disputed.project)
    assert report["disagreements"] == {"disputed_items": 2, "decided": 1, "decisions_total": 1}
    assert any("1 disputed item(s) wait for a decision" in w for w in report["warnings"])


def test_project_settings_for_gold_and_discussion_are_validated(acme):
    project = ProjectFactory(organization=acme.organization, questions=QUESTIONS)
    project.gold_rate_percent = 80
    with pytest.raises(Exception, match="50"), scope(organization=acme.organization):
        project.full_clean()
