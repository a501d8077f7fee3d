"""The demo a newcomer meets after `make run`: four log-ins, the seed project fresh for
annotating, and a finished study whose quality report, review queue and export list have
something to show."""

import io
import json
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import transaction
from django.db.models import Count
from django.test import override_settings
from django.urls import reverse
from django_scopes import scopes_disabled

from annotation.models import Adjudication, Assignment, ItemNote, Judgment, JudgmentRevision
from exports.models import Export
from project.demo import DEMO_LOGINS, FEEDBACK_PROJECT_NAME, STUDY_PROJECT_NAME, load_demo
from qc.models import QCReport
from tasks.models import (
    Candidate,
    FeedbackSignal,
    Item,
    KTOExample,
    Membership,
    Organization,
    Project,
    Prompt,
    Rule,
    SignalPair,
)
from tests.conftest import client_for

SEED_NAME = "DPO Preference Data Collection"
BIASED = "annotator3@demo.chosen.local"


@pytest.fixture(scope="module")
def loaded(django_db_setup, django_db_blocker, tmp_path_factory):
    """The demo, loaded once for this module (the study takes seconds to judge) in a
    transaction that is rolled back afterwards; each test runs in a savepoint inside it, so
    nothing a test does reaches the next one or any other module. The export is written
    under a media root of the module's own."""
    media = tmp_path_factory.mktemp("demo-media")
    with django_db_blocker.unblock(), override_settings(MEDIA_ROOT=media), transaction.atomic():
        load_demo()
        yield media
        transaction.set_rollback(True)


@pytest.fixture
def demo(loaded, db, settings):
    settings.MEDIA_ROOT = loaded
    User = get_user_model()
    with scopes_disabled():
        return SimpleNamespace(
            study=Project.objects.get(name=STUDY_PROJECT_NAME),
            seed=Project.objects.get(name=SEED_NAME),
            feedback=Project.objects.get(name=FEEDBACK_PROJECT_NAME),
            lead=User.objects.get(email="lead@demo.chosen.local"),
        )


def snapshot() -> dict[str, int]:
    models = [
        get_user_model(), Organization, Membership, Project, Prompt, Candidate, Item,
        Assignment, Judgment, JudgmentRevision, Adjudication, ItemNote, QCReport, Export,
        FeedbackSignal, SignalPair, KTOExample,
    ]  # fmt: skip
    with scopes_disabled():
        return {model.__name__: model.objects.count() for model in models}


def test_the_command_prints_the_four_log_ins(demo):
    out = io.StringIO()
    call_command("load_demo", stdout=out)
    printed = out.getvalue()
    for email, password in [
        ("lead@demo.chosen.local", "demo-lead-pass"),
        ("annotator1@demo.chosen.local", "demo-annotator-pass"),
        ("annotator2@demo.chosen.local", "demo-annotator-pass"),
        ("annotator3@demo.chosen.local", "demo-annotator-pass"),
    ]:
        assert email in printed and password in printed.split(email, 1)[1].splitlines()[0]
    assert STUDY_PROJECT_NAME in printed


def test_loading_the_demo_again_duplicates_nothing(demo):
    before = snapshot()
    load_demo()
    assert snapshot() == before


def test_the_study_has_forty_prompts_of_two_to_four_candidates(demo):
    with scopes_disabled():
        prompts = Prompt.objects.filter(project=demo.study)
        assert prompts.count() >= 40
        sizes = {p.candidates.filter(source=Candidate.Source.IMPORTED).count() for p in prompts}
        assert sizes == {2, 3, 4}
        assert prompts.filter(messages__isnull=False).count() >= 2  # multi-turn, system prompts


def test_the_study_is_judged_by_three_annotators_to_the_last_item(demo):
    with scopes_disabled():
        judgments = Judgment.objects.filter(project=demo.study)
        per_annotator = dict(
            judgments.values_list("annotator__email").annotate(n=Count("id")).order_by()
        )
        assert set(per_annotator) == {login.email for login in DEMO_LOGINS[1:]}
        assert min(per_annotator.values()) >= 40
        items = Item.objects.filter(project=demo.study, gold=False)
        assert all(
            item.judgments.count() == item.target_annotations for item in items
        )  # a finished study: every item has its judgments


def test_every_judgment_scores_both_replies_on_the_rubric(demo):
    with scopes_disabled():
        for judgment in Judgment.objects.filter(project=demo.study).select_related("item"):
            candidates = set(judgment.item.candidate_key.split("-"))
            assert set(judgment.rubric_scores) == candidates
            assert all(
                set(scores) == {"helpfulness", "accuracy"}
                for scores in judgment.rubric_scores.values()
            )


def test_one_judgment_carries_a_corrected_reply(demo):
    with scopes_disabled():
        corrected = Judgment.objects.filter(project=demo.study, corrected__isnull=False)
        assert corrected.count() == 1
        assert corrected.get().corrected.source == Candidate.Source.CORRECTED


def test_the_seed_project_is_left_fresh_for_annotating(demo):
    with scopes_disabled():
        assert Item.objects.filter(project=demo.seed).count() == 10
        assert not Assignment.objects.filter(project=demo.seed).exists()
        assert not Judgment.objects.filter(project=demo.seed).exists()


def test_the_lead_finds_the_finished_study_on_the_project_list(demo):
    page = client_for(demo.lead).get(reverse("annotation:home")).content.decode()
    study = reverse("tasks:project_detail", args=[demo.study.pk])
    assert f'<a href="{study}">{STUDY_PROJECT_NAME}</a>' in page


def test_the_finished_study_shows_as_complete_not_over_complete(demo):
    """Gold items go to every annotator as checks; the project's progress counts the
    dataset's items, so a finished study reads 100%, never more."""
    page = client_for(demo.lead).get(reverse("annotation:home")).content.decode()
    with scopes_disabled():
        wanted = sum(
            Item.objects.filter(project=demo.study, gold=False).values_list(
                "target_annotations", flat=True
            )
        )
    assert f"100% ({wanted} of {wanted} judgments)" in page


def test_the_leads_quality_dashboard_shows_agreement_figures(demo):
    page = client_for(demo.lead).get(reverse("qc:dashboard", args=[demo.study.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "No report yet" not in html
    with scopes_disabled():
        agreement = QCReport.objects.get(project=demo.study).data["agreement"]["preference"]
    for figure in ("fleiss_kappa", "krippendorff_alpha", "percent_agreement"):
        assert isinstance(agreement[figure], float)
        assert f"<td>{agreement[figure]}</td>" in html


def test_the_quality_report_flags_the_position_biased_annotator(demo):
    with scopes_disabled():
        people = {
            p["annotator"]: p
            for p in QCReport.objects.get(project=demo.study).data["per_annotator"]
        }
    assert people[BIASED]["position_bias"]
    assert people[BIASED]["left_share"] > 0.75
    careful = [p for name, p in people.items() if name != BIASED]
    assert all(p["left_share"] < people[BIASED]["left_share"] - 0.2 for p in careful)
    assert all(p["agreement_with_peers"] > people[BIASED]["agreement_with_peers"] for p in careful)


def test_the_careful_annotators_agree_and_the_disagreements_are_real(demo):
    with scopes_disabled():
        data = QCReport.objects.get(project=demo.study).data
    names = data["kappa_matrix"]["annotators"]

    def kappa(a, b):
        return data["kappa_matrix"]["values"][names.index(a)][names.index(b)]

    careful = kappa("annotator1@demo.chosen.local", "annotator2@demo.chosen.local")
    assert careful > 0.4
    for other in ("annotator1@demo.chosen.local", "annotator2@demo.chosen.local"):
        assert kappa(other, BIASED) < careful - 0.2
    assert data["disagreements"]["disputed_items"] > data["disagreements"]["decided"] == 1


def test_gold_items_are_answered_and_one_is_missed(demo):
    with scopes_disabled():
        people = QCReport.objects.get(project=demo.study).data["per_annotator"]
        gold = Item.objects.filter(project=demo.study, gold=True).count()
    assert gold >= 3
    assert all(p["gold_judgments"] == gold for p in people)
    missed = {p["annotator"]: p["gold_judgments"] - p["gold_correct"] for p in people}
    assert sorted(missed.values()) == [0, 0, 1]


def test_the_review_queue_lists_the_disputed_and_the_decided_items(demo):
    client = client_for(demo.lead)
    url = reverse("annotation:review", args=[demo.study.pk])
    with scopes_disabled():
        decision = Adjudication.objects.select_related("item__prompt").get(project=demo.study)
        open_items = Item.objects.filter(project=demo.study).exclude(pk=decision.item_id)
    open_page = client.get(url, {"show": "open"}).content.decode()
    listed = [item for item in open_items if f'data-item="{item.pk}"' in open_page]
    assert len(listed) >= 5
    decided_page = client.get(url, {"show": "decided"}).content.decode()
    assert f'data-item="{decision.item_id}"' in decided_page
    assert decision.item.prompt.external_id in decided_page


def test_the_decided_item_shows_its_discussion_and_decision_note(demo):
    with scopes_disabled():
        decision = Adjudication.objects.get(project=demo.study)
        note = ItemNote.objects.get(item_id=decision.item_id)
    page = client_for(demo.lead).get(
        reverse("annotation:review_item", args=[demo.study.pk, decision.item_id])
    )
    html = page.content.decode()
    assert page.status_code == 200
    assert note.text[:60] in html and decision.note[:60] in html


def test_the_exports_page_lists_a_finished_trl_export_that_keeps_every_turn(demo):
    client = client_for(demo.lead)
    with scopes_disabled():
        export = Export.objects.get(project=demo.study)
    assert (export.format, export.status) == ("trl-conversational", Export.Status.SUCCEEDED)
    page = client.get(reverse("exports:page", args=[demo.study.pk])).content.decode()
    assert f'data-export="{export.pk}"' in page and "train.jsonl" in page
    download = client.get(
        reverse("exports:download", args=[demo.study.pk, export.pk, "train.jsonl"])
    )
    assert download.status_code == 200
    records = [json.loads(line) for line in b"".join(download.streaming_content).splitlines()]
    assert len(records) == export.counts["train"] >= 20
    for record in records:
        assert set(record) == {"prompt", "chosen", "rejected"}
        assert record["prompt"][-1]["role"] == "user"
        assert record["chosen"] != record["rejected"]
    # the study's conversations arrive whole: earlier turns and system prompts
    assert any(len(record["prompt"]) > 1 for record in records)


def test_the_feedback_project_has_pairs_of_every_source_and_some_wait_for_experts(demo):
    with scopes_disabled():
        pairs = SignalPair.objects.filter(project=demo.feedback)
        assert {p.rule for p in pairs} >= {
            Rule.THUMBS,
            Rule.REGENERATION,
            Rule.EDIT,
            Rule.AB_TEST,
            Rule.CORRECTION,
        }
        waiting = pairs.filter(status=SignalPair.Status.TO_VERIFY)
        assert waiting.exists() and all(p.item_id for p in waiting)
        assert KTOExample.objects.filter(project=demo.feedback, desirable=False).exists()
        texts = " ".join(
            Candidate.objects.filter(prompt__project=demo.feedback).values_list("text", flat=True)
        )
    # imported with redaction: the welcome text's address and number never reached the database
    assert "help@acme.example" not in texts and "555-123-4567" not in texts
    assert "[email]" in texts


def test_an_annotator_verifies_a_machine_made_pair_of_the_feedback_project(demo):
    client = client_for(get_user_model().objects.get(email=DEMO_LOGINS[1].email))
    page = client.get(reverse("annotation:annotate", args=[demo.feedback.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Reject: neither is usable" in html and "The source said" not in html
