"""The project form's question editor, server side: the canonical JSON text, schema errors
placed at their fields, templates on Add project, and the guardrail of a judged project."""

import json

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from tasks.admin.question_editor import schema_text
from tasks.audit.actions import Action
from tasks.models import AuditEvent, Project
from tasks.project_templates import DPO_PAIRWISE, RUBRIC, TEMPLATES
from tasks.schema import QuestionSchemaError, SchemaProblem, validate_questions
from tests.factories import ProjectFactory
from tests.tasks.test_schema import admin_form_data
from tests.tasks.test_tenant_isolation import judgment

pytestmark = pytest.mark.django_db


def change_url(project) -> str:
    return reverse("admin:tasks_project_change", args=[project.pk])


def problems_of(questions, mode="pairwise") -> list[SchemaProblem]:
    with pytest.raises(QuestionSchemaError) as raised:
        validate_questions(questions, mode=mode)
    assert [p.message for p in raised.value.problems] == raised.value.errors_list
    return raised.value.problems


# --- the JSON text ------------------------------------------------------------------------


def test_the_text_is_the_same_before_and_after_postgresql_reorders_the_keys(acme):
    """A template's schema (Python's key order) and the same schema read back from jsonb
    (PostgreSQL's order) are one text: keys shorter first, whole numbers without .0."""
    project = ProjectFactory(organization=acme.organization, questions=RUBRIC.questions)
    with scopes_disabled():
        project.refresh_from_db()
    assert list(project.questions[0]) != list(RUBRIC.questions[0])  # jsonb's order
    text = schema_text(RUBRIC.questions)
    assert schema_text(project.questions) == text
    assert text.startswith('[\n  {\n    "kind": "preference",\n    "name": "preference",\n')
    assert '"weight": 1,\n' in text and '"1": "poor"' in text
    assert json.loads(text) == RUBRIC.questions


def test_text_keeps_non_ascii_as_written(acme):
    text = schema_text([{"description": "Précis — “ok”\nnext"}])
    assert '"description": "Précis — “ok”\\nnext"' in text


def test_saving_the_served_text_unchanged_stores_and_serves_the_same_text(acme, as_user):
    client = as_user(acme.lead)
    served = admin_form_data(client.get(change_url(acme.project)))
    text = served["questions"]
    assert text == schema_text(acme.project.questions)
    assert client.post(change_url(acme.project), served).status_code == 302
    again = admin_form_data(client.get(change_url(acme.project)))["questions"]
    assert again == text
    with scopes_disabled():
        assert Project.objects.get(pk=acme.project.pk).questions == json.loads(text)


# --- errors placed at their fields -----------------------------------------------------------


def test_a_conflicting_shortcut_is_placed_at_that_labels_key():
    questions = json.loads(json.dumps(DPO_PAIRWISE.questions))
    questions[0]["labels"][2]["key"] = "a"
    (problem,) = problems_of(questions)
    assert problem == SchemaProblem(
        "questions[0] 'preference' labels[2]: key 'a' is already the shortcut of "
        "preference → 'Response A Preferred'",
        question=0,
        part="labels",
        index=2,
        field="key",
    )


def test_problems_of_options_scales_and_the_whole_schema_are_placed():
    questions = json.loads(json.dumps(DPO_PAIRWISE.questions))
    questions[1]["options"][1]["value"] = "helpful"
    questions.append({"name": "acc", "kind": "rating", "scale": {"min": "one"}})
    questions.append({"name": "p2", "kind": "preference", "labels": questions[0]["labels"]})
    placed = {(p.question, p.part, p.index, p.field) for p in problems_of(questions)}
    assert (1, "options", 1, "value") in placed
    assert (3, None, None, "scale.min") in placed
    assert (None, None, None, "") in placed  # "need exactly one 'preference' question"
    (mode,) = problems_of(questions, mode="triplets")
    assert mode.field == "mode"


def test_a_refused_save_keeps_everything_and_hands_the_editor_the_placed_problems(acme, as_user):
    client = as_user(acme.lead)
    data = admin_form_data(client.get(change_url(acme.project)))
    questions = json.loads(data["questions"])
    questions[0]["labels"][1]["key"] = "a"
    data["questions"] = schema_text(questions)
    response = client.post(change_url(acme.project), data)
    assert response.status_code == 200
    html = response.content.decode()
    assert '<script id="qe-problems" type="application/json">' in html
    assert '"part": "labels", "index": 1, "field": "key"' in html
    with scopes_disabled():
        assert Project.objects.get(pk=acme.project.pk).questions == acme.project.questions


# --- templates on Add project ------------------------------------------------------------------


def test_add_project_offers_every_template_and_a_blank_project(acme, as_user):
    html = as_user(acme.lead).get(reverse("admin:tasks_project_add")).content.decode()
    assert 'href="?"' in html and "Blank project" in html
    for template in TEMPLATES.values():
        assert f'href="?template={template.key}"' in html
        assert template.title in html


@pytest.mark.parametrize("key", sorted(TEMPLATES))
def test_a_template_fills_mode_questions_and_guidelines(key, acme, as_user):
    response = as_user(acme.lead).get(f"{reverse('admin:tasks_project_add')}?template={key}")
    form = response.context["adminform"].form
    template = TEMPLATES[key]
    assert form["mode"].value() == template.mode
    assert form["guidelines"].value() == template.guidelines
    assert form["questions"].value() == schema_text(template.questions)  # the textarea's text


def test_an_unknown_template_is_a_blank_project_with_the_default_questions(acme, as_user):
    response = as_user(acme.lead).get(f"{reverse('admin:tasks_project_add')}?template=nope")
    questions = json.loads(response.context["adminform"].form["questions"].value())
    assert [q["name"] for q in questions] == ["preference", "reasoning"]


def test_a_project_added_from_a_template_stays_editable(acme, as_user):
    client = as_user(acme.lead)
    add = f"{reverse('admin:tasks_project_add')}?template=dpo_pairwise"
    data = admin_form_data(client.get(add))
    data.update(name="From DPO", guidelines="Our own words.")
    assert client.post(add, data).status_code == 302
    with scopes_disabled():
        project = Project.objects.get(name="From DPO")
    assert project.questions == DPO_PAIRWISE.questions
    assert project.guidelines == "Our own words."


# --- the guardrail of a judged project -----------------------------------------------------------


def changed_questions(project) -> str:
    questions = json.loads(json.dumps(project.questions))
    questions[0]["labels"][0]["text"] = "A wins"
    return schema_text(questions)


def test_a_judged_project_says_which_version_its_judgments_keep(acme, as_user):
    judgment(acme)
    html = as_user(acme.lead).get(change_url(acme.project)).content.decode()
    version = acme.project.schema_version
    assert (
        f"1 judgment was made under schema version {version}. Saving changed questions keeps "
        f"them (they stay tagged with version {version}); new judgments get version "
        f"{version + 1}."
    ) in html
    assert f"I understand: existing judgments are kept under version {version}" in html


def test_changing_a_judged_projects_questions_needs_the_confirmation(acme, as_user):
    judgment(acme)
    client = as_user(acme.lead)
    data = admin_form_data(client.get(change_url(acme.project)))
    data["questions"] = changed_questions(acme.project)
    response = client.post(change_url(acme.project), data)
    assert response.status_code == 200
    (error,) = response.context["adminform"].form.errors["confirm_schema_change"]
    assert "1 judgments were made under schema version 1" in error
    with scopes_disabled():
        assert Project.objects.get(pk=acme.project.pk).questions == acme.project.questions


def test_other_changes_to_a_judged_project_need_no_confirmation(acme, as_user):
    judgment(acme)
    client = as_user(acme.lead)
    data = admin_form_data(client.get(change_url(acme.project)))
    data["description"] = "Now with a description."
    assert client.post(change_url(acme.project), data).status_code == 302


def test_a_confirmed_change_is_saved_and_audited_with_before_and_after(acme, as_user):
    judgment(acme)
    client = as_user(acme.lead)
    before = acme.project.questions
    data = admin_form_data(client.get(change_url(acme.project)))
    data.update(questions=changed_questions(acme.project), confirm_schema_change="on")
    assert client.post(change_url(acme.project), data).status_code == 302
    with scopes_disabled():
        after = Project.objects.get(pk=acme.project.pk).questions
        (event,) = AuditEvent.objects.filter(
            action=Action.PROJECT_SCHEMA_CHANGED, object_id=str(acme.project.pk)
        )
    assert after[0]["labels"][0]["text"] == "A wins"
    assert event.actor_id == acme.lead.pk
    assert event.changes["questions"] == [before, after]
