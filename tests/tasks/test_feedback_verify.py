"""Experts verify machine-made pairs: queueing them as items, settling them from the
judgments, and telling the expert the source only after the answer."""

import pytest
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from annotation.adjudication import decide
from annotation.allocator import next_assignment
from annotation.models import Judgment
from annotation.services import submit_judgment, undo_last_submit, update_judgment
from annotation.verification import settle
from tasks.feedback.verify import NotPairwise, queue_for_verification
from tasks.models import Candidate, FeedbackSignal, Item, Project, Role, SignalPair
from tasks.project_templates import VERIFY_PAIRS
from tasks.text import content_hash
from tests.factories import ProjectFactory, PromptFactory, member

pytestmark = pytest.mark.django_db
Status = SignalPair.Status


def verification_project(organization, **fields) -> Project:
    """A project made from the "Verify machine-made pairs" template."""
    with scopes_disabled():
        return ProjectFactory(
            organization=organization,
            mode=VERIFY_PAIRS.mode,
            questions=VERIFY_PAIRS.questions,
            guidelines=VERIFY_PAIRS.guidelines,
            **fields,
        )


def make_pair(
    project,
    n: int,
    *,
    rule="edit",
    confidence=0.6,
    status=Status.TO_VERIFY,
    reason="User edit: the edited reply over the original",
    texts=None,
    prompt=None,
) -> SignalPair:
    """A signal pair as the pair builder leaves it: a prompt, the two replies (feedback-log
    candidates), the signal it rests on."""
    chosen_text, rejected_text = texts or (f"edited reply {n}", f"original reply {n}")
    with scopes_disabled():
        prompt = prompt or PromptFactory(
            project=project, external_id=f"log-{n}", text=f"Question {n} from the chat log"
        )
        chosen, rejected = (
            Candidate.objects.create(
                organization=project.organization,
                prompt=prompt,
                text=text,
                source=Candidate.Source.FEEDBACK_LOG,
                content_hash=content_hash(text),
            )
            for text in (chosen_text, rejected_text)
        )
        signal = FeedbackSignal.objects.create(
            organization=project.organization,
            project=project,
            kind=FeedbackSignal.Kind.FEEDBACK,
            prompt=prompt,
            reply=rejected,
            other=chosen,
            source="feedback.jsonl",
            line=n + 1,
        )
        return SignalPair.objects.create(
            organization=project.organization,
            project=project,
            prompt=prompt,
            chosen=chosen,
            rejected=rejected,
            rule=rule,
            confidence=confidence,
            reason=reason,
            evidence=[signal.pk],
            status=status,
        )


def queue(project) -> int:
    with scope(organization=project.organization):
        return queue_for_verification(project=project)


def judge(project, expert, verdict: str | dict) -> Judgment:
    """The expert takes their next item and answers ``agree`` (the source's chosen is
    better), ``flip``, ``tie`` or ``reject``, pressing the letter it has on their screen.
    ``verdict`` may be a list of verdicts by rule: the next for the rule of the item given."""
    with scope(organization=project.organization):
        assignment = next_assignment(project=project, annotator=expert).assignment
        pair = SignalPair.objects.filter(item_id=assignment.item_id).first()
        if isinstance(verdict, dict):
            verdict = verdict[pair.rule].pop(0)
        chosen_letter = "AB"[assignment.display_order.index(pair.chosen_id)]
        label = {
            "agree": chosen_letter,
            "flip": "B" if chosen_letter == "A" else "A",
            "tie": "tie",
            "reject": "both_bad",
        }[verdict]
        return submit_judgment(
            project=project,
            assignment_id=assignment.pk,
            annotator=expert,
            answers={"preference": label},
        )


def statuses(project) -> list[str]:
    with scopes_disabled():
        return list(
            SignalPair.objects.filter(project=project)
            .order_by("pk")
            .values_list("status", flat=True)
        )


# --- queueing ----------------------------------------------------------------------------------


def test_pairs_waiting_for_experts_become_pairwise_items_once(acme):
    project = verification_project(acme.organization, annotations_per_item=2)
    waiting = [make_pair(project, n) for n in range(3)]
    make_pair(project, 3, confidence=0.95, status=Status.ACCEPTED)
    make_pair(project, 4, status=Status.CONTRADICTED)

    assert queue(project) == 3
    assert queue(project) == 0  # idempotent
    with scopes_disabled():
        items = list(Item.objects.filter(project=project).order_by("pk"))
        assert len(items) == 3
        for pair, item in zip(waiting, items, strict=True):
            pair.refresh_from_db()
            assert pair.item_id == item.pk and item.prompt_id == pair.prompt_id
            assert item.mode == "pairwise" and item.target_annotations == 2 and not item.gold
            slots = list(item.slots.values_list("candidate_id", flat=True))
            assert slots == sorted([pair.chosen_id, pair.rejected_id])  # not chosen first
        assert SignalPair.objects.filter(item__isnull=False).count() == 3


def test_two_pairs_over_the_same_replies_share_one_item(acme):
    project = verification_project(acme.organization)
    edit = make_pair(project, 0)
    with scopes_disabled():
        correction = SignalPair.objects.create(
            organization=acme.organization,
            project=project,
            prompt=edit.prompt,
            chosen=edit.chosen,
            rejected=edit.rejected,
            rule="correction",
            confidence=0.5,
            reason="Expert correction over the original",
            status=Status.TO_VERIFY,
        )
    assert queue(project) == 1
    with scopes_disabled():
        edit.refresh_from_db()
        correction.refresh_from_db()
    assert edit.item_id == correction.item_id is not None


def test_items_are_handed_out_like_any_other(acme):
    project = verification_project(acme.organization)
    for n in range(3):
        make_pair(project, n)
    queue(project)
    seen = set()
    for _ in range(3):
        judgment = judge(project, acme.annotator, "agree")
        seen.add(judgment.item_id)
    assert len(seen) == 3
    with scope(organization=acme.organization):
        assert next_assignment(project=project, annotator=acme.annotator).reason == "done"


def test_a_best_worst_project_cannot_verify_pairs(acme):
    with scopes_disabled():
        project = ProjectFactory(organization=acme.organization, mode=Project.Mode.BEST_WORST)
    make_pair(project, 0)
    with pytest.raises(NotPairwise):
        queue(project)
    assert statuses(project) == ["to_verify"]


def test_queueing_touches_only_its_own_project(acme, globex):
    ours = verification_project(acme.organization)
    theirs = verification_project(globex.organization)
    make_pair(ours, 0)
    make_pair(theirs, 1)
    assert queue(ours) == 1
    with scopes_disabled():
        assert not Item.objects.filter(project=theirs).exists()
        assert SignalPair.objects.get(project=theirs).item_id is None


# --- settling ----------------------------------------------------------------------------------


def test_one_expert_confirms_flips_and_rejects(acme):
    project = verification_project(acme.organization)
    for n in range(4):
        make_pair(project, n)
    queue(project)
    answers = {}
    for verdict in ("agree", "flip", "reject", "tie"):
        judgment = judge(project, acme.annotator, verdict)
        answers[judgment.item_id] = verdict
    with scopes_disabled():
        settled = dict(SignalPair.objects.values_list("item_id", "status"))
    expected = {"agree": "confirmed", "flip": "flipped", "reject": "rejected", "tie": "rejected"}
    assert {item: expected[v] for item, v in answers.items()} == settled


def test_a_pair_waits_for_its_overlap_and_a_split_vote_for_a_lead(acme):
    project = verification_project(acme.organization, annotations_per_item=2)
    make_pair(project, 0)
    queue(project)
    second = member(acme.organization, Role.ANNOTATOR)
    judge(project, acme.annotator, "agree")
    assert statuses(project) == ["to_verify"]  # one of two judgments
    judge(project, second, "flip")
    assert statuses(project) == ["to_verify"]  # one for, one against: disputed
    with scope(organization=acme.organization):
        pair = SignalPair.objects.get()
        decide(
            item=pair.item,
            lead=acme.lead,
            fields={
                "outcome": "preferred",
                "chosen": pair.rejected_id,
                "rejected": pair.chosen_id,
                "ranking": [],
                "note": "The original reply was right; the edit broke the code.",
            },
        )
    assert statuses(project) == ["flipped"]


def test_a_majority_of_three_settles_the_pair(acme):
    project = verification_project(acme.organization, annotations_per_item=3)
    make_pair(project, 0)
    queue(project)
    for verdict in ("agree", "flip", "agree"):
        judge(project, member(acme.organization, Role.ANNOTATOR), verdict)
    assert statuses(project) == ["confirmed"]


def test_settling_follows_edits_and_undo_and_is_idempotent(acme):
    project = verification_project(acme.organization)
    make_pair(project, 0)
    queue(project)
    judgment = judge(project, acme.annotator, "agree")
    assert statuses(project) == ["confirmed"]
    with scope(organization=acme.organization):
        assert settle(project=project) == 0  # nothing to change
        pair = SignalPair.objects.get()
        letter = "AB"[judgment.assignment.display_order.index(pair.rejected_id)]
        update_judgment(
            judgment_id=judgment.pk, annotator=acme.annotator, answers={"preference": letter}
        )
    assert statuses(project) == ["flipped"]
    with scope(organization=acme.organization):
        undo_last_submit(project=project, annotator=acme.annotator)
    assert statuses(project) == ["to_verify"]


def test_accepted_and_contradicted_pairs_are_never_settled(acme):
    project = verification_project(acme.organization)
    make_pair(project, 0, status=Status.ACCEPTED, confidence=0.9)
    make_pair(project, 1, status=Status.CONTRADICTED)
    with scope(organization=acme.organization):
        assert settle(project=project) == 0
    assert statuses(project) == ["accepted", "contradicted"]


# --- the annotate page: the source only after the answer ----------------------------------------


def test_the_source_is_revealed_only_after_the_answer(acme, as_user):
    project = verification_project(acme.organization)
    make_pair(project, 0, reason="The user rewrote the <b>reply</b>")
    queue(project)
    client = as_user(acme.annotator)
    page = client.get(reverse("annotation:annotate", args=[project.pk])).content.decode()
    assert "rewrote" not in page and "User edit" not in page and "60%" not in page
    with scopes_disabled():
        pair = SignalPair.objects.get()
        assignment = pair.item.assignments.get()
    chosen_letter = "AB"[assignment.display_order.index(pair.chosen_id)]
    flipped_letter = "B" if chosen_letter == "A" else "A"
    response = client.post(
        reverse("annotation:submit", args=[project.pk, assignment.pk]),
        {"preference": flipped_letter},
        headers={"X-Chosen-Fragment": "1"},
    )
    revealed = response.json()["reveal"]
    assert revealed == (
        f"The source said Response {chosen_letter} is better (User edit over the original "
        "reply, confidence 60%: The user rewrote the <b>reply</b>); you flipped it."
    )
    assert "<b>" not in response.json()["html"]  # the reveal is text, set as text by the page
    assert statuses(project) == ["flipped"]


def test_without_javascript_the_reveal_is_a_message_after_the_redirect(acme, as_user):
    project = verification_project(acme.organization)
    make_pair(project, 0)
    queue(project)
    client = as_user(acme.annotator)
    client.get(reverse("annotation:annotate", args=[project.pk]))
    with scopes_disabled():
        pair = SignalPair.objects.get()
        assignment = pair.item.assignments.get()
    letter = "AB"[assignment.display_order.index(pair.chosen_id)]
    response = client.post(
        reverse("annotation:submit", args=[project.pk, assignment.pk]),
        {"preference": letter},
        follow=True,
    )
    assert "you agreed." in response.content.decode()


def test_an_ordinary_item_reveals_nothing(acme, as_user):
    project = verification_project(acme.organization)
    pair = make_pair(project, 0)
    with scopes_disabled():
        SignalPair.objects.filter(pk=pair.pk).delete()
        item = Item.objects.create(
            organization=acme.organization,
            project=project,
            prompt=pair.prompt,
            mode="pairwise",
            candidate_key=f"{pair.chosen_id}-{pair.rejected_id}",
        )
        item.slots.create(candidate=pair.chosen, position=0)
        item.slots.create(candidate=pair.rejected, position=1)
    client = as_user(acme.annotator)
    client.get(reverse("annotation:annotate", args=[project.pk]))
    with scopes_disabled():
        assignment = item.assignments.get()
    response = client.post(
        reverse("annotation:submit", args=[project.pk, assignment.pk]),
        {"preference": "A"},
        headers={"X-Chosen-Fragment": "1"},
    )
    assert response.json()["reveal"] == ""


def test_the_history_page_tells_the_source_of_a_verified_pair(acme, as_user):
    project = verification_project(acme.organization)
    make_pair(project, 0)
    queue(project)
    judge(project, acme.annotator, "reject")
    page = as_user(acme.annotator).get(reverse("annotation:history", args=[project.pk]))
    assert "you rejected both, so the pair is dropped." in page.content.decode()
