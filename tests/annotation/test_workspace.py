"""The annotate page, history, edit and undo, as an annotator uses them (HTTP level)."""

import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled

from annotation.models import Assignment, Judgment, JudgmentRevision
from tasks.models import Candidate, Role
from tests.factories import ProjectFactory, member
from tests.tasks.test_prompt_import import jsonl, row, run

pytestmark = pytest.mark.django_db
FRAGMENT = {"HTTP_X_CHOSEN_FRAGMENT": "1"}


def with_items(project, n=3, **extra):
    run(project, {"d.jsonl": jsonl(*(row(i, **extra) for i in range(n)))})
    return project


def page(client, project):
    return client.get(f"/projects/{project.pk}/annotate/")


def current(annotator):
    with scopes_disabled():
        return Assignment.objects.get(annotator=annotator, status="active")


def test_annotate_page_shows_the_item_in_its_recorded_order(acme, as_user):
    with_items(acme.project)
    html = page(as_user(acme.annotator), acme.project).content.decode()
    assignment = current(acme.annotator)
    shown = [int(i) for i in re.findall(r'data-candidate-id="(\d+)"', html)]
    assert shown == assignment.display_order
    assert "Response A is better" in html and "<kbd>a</kbd>" in html
    assert "0 of 3" in html and "Pick the more helpful response." in html  # progress, guidelines


def test_submit_is_one_round_trip_returning_the_next_item(acme, as_user):
    with_items(acme.project)
    client = as_user(acme.annotator)
    page(client, acme.project)
    first = current(acme.annotator)
    response = client.post(
        f"/projects/{acme.project.pk}/annotate/{first.pk}/submit/",
        {"preference": "Response B is better", "time_spent_ms": "4200"},
        **FRAGMENT,
    )
    assert response.status_code == 200
    body = response.json()
    nxt = current(acme.annotator)
    assert nxt.pk != first.pk and f'data-assignment="{nxt.pk}"' in body["html"]
    assert (body["progress"]["mine"], body["progress"]["mine_target"]) == (1, 3)
    with scopes_disabled():
        judgment = Judgment.objects.get(assignment=first)
    assert (judgment.chosen_id, judgment.rejected_id) == (
        first.display_order[1],
        first.display_order[0],
    )
    assert judgment.time_spent_ms == 4200


def test_a_response_with_script_renders_inert(acme, as_user):
    run(
        acme.project,
        {
            "x.jsonl": jsonl(
                row(1, response_a='<script>alert("x")</script> <img src=x onerror=alert(1)> `code`')
            )
        },
    )
    html = page(as_user(acme.annotator), acme.project).content.decode()
    assert '<script>alert("x")</script>' not in html and "<img src=x" not in html
    assert (
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
        or '&lt;script&gt;alert("x")' in html
    )
    assert "onerror=alert(1)&gt;" in html and "<code>code</code>" in html


def test_potato_layout_is_filled_with_escaped_values(acme, as_user):
    project = ProjectFactory(
        organization=acme.organization,
        candidate_fields=["response_a", "response_b"],
        html_layout='<div style="display: flex; background: url(http://x)"><p>{{text}}</p>'
        '<div>{{response_a}}</div><div onclick="x()">{{response_b}}</div></div>',
    )
    run(project, {"d.jsonl": jsonl(row(1, text="<b>bold?</b>"))})
    response = page(as_user(acme.annotator), project)
    html = response.content.decode()
    assert "<p>&lt;b&gt;bold?&lt;/b&gt;</p>" in html and "onclick" not in html
    assert re.search(
        r'<style nonce="[^"]+">\.potato-layout \.lyt-0 \{ display: flex \}</style>', html
    )
    assert "http://x" not in html
    nonce = re.search(r'<style nonce="([^"]+)"', html).group(1)
    assert f"'nonce-{nonce}'" in response["Content-Security-Policy"]


def test_reload_returns_the_same_item(acme, as_user):
    with_items(acme.project)
    client = as_user(acme.annotator)
    page(client, acme.project)
    first = current(acme.annotator)
    page(client, acme.project)
    assert current(acme.annotator).pk == first.pk


def test_a_reclaimed_assignment_is_refused_and_the_answer_can_be_kept(acme, as_user):
    with_items(acme.project, n=1)
    client = as_user(acme.annotator)
    page(client, acme.project)
    stale = current(acme.annotator)
    with scopes_disabled():
        Assignment.objects.filter(pk=stale.pk).update(
            expires_at=timezone.now() - timedelta(minutes=1)
        )
    page(as_user(member(acme.organization, Role.ANNOTATOR)), acme.project)  # takes it over
    response = client.post(
        f"/projects/{acme.project.pk}/annotate/{stale.pk}/submit/",
        {"preference": "Response A is better"},
        **FRAGMENT,
    )
    assert response.status_code == 409
    assert "handed to someone else after 30 minutes" in response.json()["message"]


def test_invalid_answer_keeps_the_form_with_the_error(acme, as_user):
    with_items(acme.project)
    client = as_user(acme.annotator)
    page(client, acme.project)
    a = current(acme.annotator)
    response = client.post(
        f"/projects/{acme.project.pk}/annotate/{a.pk}/submit/",
        {"reasoning": "kept text"},
        **FRAGMENT,
    )
    assert response.status_code == 400
    html = response.json()["html"]
    assert "Choose one of the labels." in html and "kept text" in html
    assert f'data-assignment="{a.pk}"' in html


def test_skip_with_required_reason(acme, as_user):
    from tasks.models import Project

    with scopes_disabled():
        Project.objects.filter(pk=acme.project.pk).update(skip_reason_required=True)
    with_items(acme.project)
    client = as_user(acme.annotator)
    page(client, acme.project)
    a = current(acme.annotator)
    url = f"/projects/{acme.project.pk}/annotate/{a.pk}/skip/"
    assert client.post(url, {}, **FRAGMENT).status_code == 400
    assert client.post(url, {"skip_reason": "not my field"}, **FRAGMENT).status_code == 200
    with scopes_disabled():
        a.refresh_from_db()
    assert (a.status, a.skip_reason) == ("skipped", "not my field")
    # The page sends a skip again when its answer was lost: the same outcome, no refusal.
    again = client.post(url, {"skip_reason": "not my field"}, **FRAGMENT)
    assert again.status_code == 200
    assert "no longer open for you" not in again.json()["html"]


def test_undo_reopens_the_last_submit(acme, as_user):
    with_items(acme.project)
    client = as_user(acme.annotator)
    page(client, acme.project)
    first = current(acme.annotator)
    client.post(
        f"/projects/{acme.project.pk}/annotate/{first.pk}/submit/",
        {"preference": "Tie"},
        **FRAGMENT,
    )
    response = client.post(f"/projects/{acme.project.pk}/annotate/undo/", **FRAGMENT)
    assert f'data-assignment="{first.pk}"' in response.json()["html"]
    assert current(acme.annotator).pk == first.pk
    with scopes_disabled():
        assert not Judgment.objects.exists()
        assert Assignment.objects.filter(annotator=acme.annotator).count() == 1


def test_history_and_edit_keep_the_previous_version(acme, as_user):
    with_items(acme.project)
    client = as_user(acme.annotator)
    page(client, acme.project)
    a = current(acme.annotator)
    client.post(
        f"/projects/{acme.project.pk}/annotate/{a.pk}/submit/",
        {"preference": "Response A is better", "reasoning": "first"},
    )
    with scopes_disabled():
        judgment = Judgment.objects.get()
    history = client.get(f"/projects/{acme.project.pk}/history/").content.decode()
    assert f'data-judgment="{judgment.pk}"' in history
    edit_url = f"/projects/{acme.project.pk}/history/{judgment.pk}/"
    form = client.get(edit_url).content.decode()
    assert (
        'value="Response A is better" data-means="A" checked' in form
        and ">first</textarea>" in form
    )
    assert (
        client.post(edit_url, {"preference": "Both bad", "reasoning": "second"}).status_code == 302
    )
    with scopes_disabled():
        judgment.refresh_from_db()
        revision = JudgmentRevision.objects.get(judgment=judgment)
    assert (judgment.outcome, judgment.version, judgment.reasoning, judgment.chosen_id) == (
        "both_bad",
        2,
        "second",
        None,
    )
    assert revision.version == 1 and revision.snapshot["reasoning"] == "first"
    assert revision.snapshot["chosen"] == a.display_order[0]


def test_best_worst_and_ranking_by_position(acme, as_user):
    for mode, data in (
        ("best_worst", {"preference_best": "3", "preference_worst": "1"}),
        ("ranking", {"preference_ranking": "3,1,2"}),
    ):
        project = ProjectFactory(organization=acme.organization, mode=mode)
        run(project, {"d.jsonl": jsonl(row(1, response_c="c"))})
        client = as_user(acme.annotator)
        page(client, project)
        with scopes_disabled():
            a = Assignment.objects.get(annotator=acme.annotator, project=project, status="active")
        assert (
            client.post(f"/projects/{project.pk}/annotate/{a.pk}/submit/", data).status_code == 302
        )
        with scopes_disabled():
            judgment = Judgment.objects.get(assignment=a)
        order = a.display_order
        if mode == "best_worst":
            assert (judgment.chosen_id, judgment.rejected_id) == (order[2], order[0])
        else:  # best first: positions 3, 1, 2
            assert judgment.ranking == [order[2], order[0], order[1]]
            assert (judgment.chosen_id, judgment.rejected_id) == (order[2], order[1])


def test_correction_becomes_a_corrected_candidate(acme, as_user):
    questions = [*acme.project.questions, {"name": "fix", "kind": "correction"}]
    project = ProjectFactory(organization=acme.organization, questions=questions)
    run(project, {"d.jsonl": jsonl(row(1))})
    client = as_user(acme.annotator)
    page(client, project)
    a = current(acme.annotator)
    client.post(
        f"/projects/{project.pk}/annotate/{a.pk}/submit/",
        {"preference": "Response A is better", "fix": "A better, corrected answer."},
    )
    with scopes_disabled():
        judgment = Judgment.objects.get()
        assert judgment.corrected.source == Candidate.Source.CORRECTED
        assert judgment.corrected.text == "A better, corrected answer."


def submit_correction(acme, as_user, fix: str) -> Judgment:
    questions = [*acme.project.questions, {"name": "fix", "kind": "correction"}]
    project = ProjectFactory(organization=acme.organization, questions=questions)
    run(project, {"d.jsonl": jsonl(row(1, response_b="Line one.\nLine two."))})
    client = as_user(acme.annotator)
    page(client, project)
    a = current(acme.annotator)
    client.post(
        f"/projects/{project.pk}/annotate/{a.pk}/submit/",
        {"preference": "Response A is better", "fix": fix},
    )
    with scopes_disabled():
        return Judgment.objects.select_related("corrected").get()


def test_a_correction_that_repeats_a_response_in_crlf_is_that_response(acme, as_user):
    judgment = submit_correction(acme, as_user, "Line one.\r\nLine two.\r\n")
    assert judgment.corrected.source == Candidate.Source.IMPORTED
    assert judgment.corrected.text == "Line one.\nLine two."


def test_a_correction_that_changes_only_the_case_is_a_new_candidate(acme, as_user):
    judgment = submit_correction(acme, as_user, "LINE ONE.\nLINE TWO.")
    assert judgment.corrected.source == Candidate.Source.CORRECTED
    assert judgment.corrected.text == "LINE ONE.\nLINE TWO."


def test_project_list_shows_own_and_overall_progress(acme, as_user):
    with_items(acme.project)
    client = as_user(acme.annotator)
    page(client, acme.project)
    a = current(acme.annotator)
    client.post(f"/projects/{acme.project.pk}/annotate/{a.pk}/submit/", {"preference": "Tie"})
    html = client.get("/").content.decode()
    assert "1 of 3" in html and "33% (1 of 3 judgments)" in html


def test_judgments_api_leads_see_all_annotators_their_own(acme, as_user):
    with_items(acme.project)
    other = member(acme.organization, Role.ANNOTATOR)
    for person in (acme.annotator, other):
        client = as_user(person)
        page(client, acme.project)
        client.post(
            f"/projects/{acme.project.pk}/annotate/{current(person).pk}/submit/",
            {"preference": "Tie"},
        )
    url = f"/api/v1/projects/{acme.project.pk}/judgments"
    lead = as_user(acme.lead).get(url).json()
    assert lead["count"] == 2
    mine = as_user(other).get(url).json()
    assert [j["annotator"] for j in mine["results"]] == [other.email]
    filtered = as_user(acme.lead).get(url, {"annotator": acme.annotator.email}).json()
    assert [j["annotator"] for j in filtered["results"]] == [acme.annotator.email]
    future = as_user(acme.lead).get(url, {"created_after": "2999-01-01T00:00:00Z"}).json()
    assert future["count"] == 0
    assert json.dumps(lead).count('"outcome": "tie"') == 2
