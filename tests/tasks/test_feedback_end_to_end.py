"""The sources' files, as imported, make the pairs their signals mean: the importer's
conventions (``data.relation``, ``data.kept``, sibling ratings) and the pair builder's
rules agree, and the weak pairs become items experts judge."""

import pytest
from django_scopes import scope, scopes_disabled

from tasks.feedback.pairs import build_pairs
from tasks.feedback.verify import queue_for_verification
from tasks.models import Item, Rule, SignalPair
from tests.tasks.test_feedback_import import jsonl, run, run_file

pytestmark = pytest.mark.django_db


def pairs_of(project) -> dict[tuple[str, str], SignalPair]:
    """{(chosen text, rejected text): pair}"""
    with scopes_disabled():
        found = SignalPair.objects.filter(project=project).select_related("chosen", "rejected")
        return {(p.chosen.text, p.rejected.text): p for p in found}


def built(project) -> dict:
    with scope(organization=project.organization):
        return build_pairs(project=project)


def test_each_kind_of_file_makes_the_pairs_it_means(acme):
    project = acme.project
    project.pair_settings = {"audit_sample_percent": 0}  # which are audited: by candidate id
    project.save()
    for name, options in [
        ("feedback-log.jsonl", {"kind": "feedback"}),
        ("open-webui-feedback-export.json", {"kind": "auto"}),
        ("ab-tests.csv", {"kind": "ab_test"}),
        ("grades.jsonl", {"kind": "grade", "scale": ["poor", "fair", "good", "excellent"]}),
        ("corrections.csv", {"kind": "correction"}),
    ]:
        assert run_file(project, name, **options).problems == [], name
    built(project)
    pairs = pairs_of(project)

    kept = pairs[
        (
            "Yes, the difference is credited to your next invoice.",
            "No, downgrades start next month.",
        )
    ]
    assert kept.rule == Rule.REGENERATION and kept.confidence == pytest.approx(0.7)
    edit = pairs[
        (
            "Welcome aboard! We are glad you are here.",
            "Welcome aboard! Reach us at help@acme.example or 555-123-4567.",
        )
    ]
    assert edit.rule == Rule.EDIT and edit.status == SignalPair.Status.ACCEPTED
    thumbs = pairs[("Open Billing and choose Export.", "Invoices cannot be exported.")]
    assert thumbs.rule == Rule.THUMBS  # two spellings of one question: one prompt
    # Open WebUI: the sibling rated up is chosen over the other reply of that turn
    sibling = pairs[
        (
            "Team is 12 EUR per seat and month, billed yearly; monthly billing is 14 EUR.",
            "Team costs 12 euros per seat per month.",
        )
    ]
    assert sibling.rule == Rule.REGENERATION and "rated up" in sibling.reason
    arena = pairs[
        (
            "Refunds are possible within 30 days of purchase with the receipt.",
            "Our refund policy, which was last updated in 2023, covers many cases, including...",
        )
    ]
    assert arena.rule == Rule.REGENERATION
    rules = {p.rule for p in pairs.values()}
    assert {Rule.GRADE, Rule.CORRECTION} <= rules, rules
    # 412 of 1,000 against 388 of 1,000 is P ≈ 0.86 < 0.95, and one "winner" row is 5/6:
    # neither A/B test of the file is significant, so neither makes a pair.
    assert Rule.AB_TEST not in rules


def test_a_regeneration_that_does_not_say_which_was_kept_is_not_read_as_an_edit(acme):
    project = acme.project
    row = {
        "id": "r-1",
        "prompt": "Is the office open on Sunday?",
        "reply": "No, it is closed on Sundays.",
        "regenerated_from": "Yes, from ten to four.",
    }
    assert run(project, {"regen.jsonl": jsonl(row)}, kind="feedback").problems == []
    built(project)
    assert pairs_of(project) == {}


def test_weak_pairs_become_items_once_and_confident_ones_do_not(acme):
    project = acme.project
    assert run_file(project, "feedback-log.jsonl", kind="feedback").problems == []
    built(project)
    with scope(organization=project.organization):
        queued = queue_for_verification(project=project)
        assert queue_for_verification(project=project) == 0  # once
    with scopes_disabled():
        waiting = SignalPair.objects.filter(project=project, status="to_verify")
        assert queued == waiting.count() >= 1  # the regeneration (0.7)
        assert all(p.item_id for p in waiting)
        items = Item.objects.filter(project=project)
        assert items.count() == queued
        accepted = SignalPair.objects.filter(project=project, status="accepted")
        assert not any(p.item_id for p in accepted)


def test_an_import_through_the_api_builds_the_pairs_and_queues_the_weak_ones(acme, as_user):
    from tests.tasks.test_feedback_import import DATA, post_feedback, upload

    acme.project.pair_settings = {"audit_sample_percent": 0}  # audited: by candidate id
    acme.project.save()
    response = post_feedback(
        as_user(acme.lead),
        acme.project,
        upload("feedback-log.jsonl", (DATA / "feedback-log.jsonl").read_bytes()),
        kind="feedback",
    )
    assert response.status_code == 201, response.content
    pairs = response.json()["report"]["pairs"]
    assert pairs["pairs"]["regeneration"] == {"to_verify": 1}
    assert pairs["queued"] == 1
    with scopes_disabled():
        pair = SignalPair.objects.get(project=acme.project, rule=Rule.REGENERATION)
        assert pair.item is not None and pair.item.project_id == acme.project.pk
