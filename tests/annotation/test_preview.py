"""The question editor's preview: the annotate page rendered from an unsaved project form,
for the organization's leads only, as safe as the annotate page itself."""

import json
import re

import pytest
from django.test import Client
from django.urls import reverse
from django_scopes import scopes_disabled

from annotation.preview import PREVIEW_MAX_BYTES, SAMPLE_PROMPT
from tasks.models import Role
from tasks.project_templates import DPO_PAIRWISE, RUBRIC
from tests.factories import member
from tests.tasks.test_prompt_import import jsonl, row, run
from tests.tasks.test_tenant_isolation import open_assignment

pytestmark = pytest.mark.django_db
URL = "/projects/preview/"


def form(questions=DPO_PAIRWISE.questions, **fields) -> dict:
    return {
        "questions": questions if isinstance(questions, str) else json.dumps(questions),
        "mode": "pairwise",
        "html_layout": "",
        "guidelines": "Be fair.",
        "project": None,
        **fields,
    }


def ask(client, body, **extra):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(URL, data, content_type="application/json", **extra)


def test_the_url_is_named_for_the_admin_to_reverse():
    assert reverse("annotation:question_preview") == URL


@pytest.mark.parametrize("role", [Role.LEAD, Role.ADMIN])
def test_leads_and_admins_get_the_workspace_with_the_built_in_sample(role, acme, as_user):
    response = ask(as_user(member(acme.organization, role)), form())
    assert response.status_code == 200
    answer = response.json()
    assert answer["errors"] == []
    assert SAMPLE_PROMPT in answer["html"]
    assert answer["html"].count('class="candidate"') == 2
    assert "<kbd>e</kbd>" in answer["html"] and "Equally Good" in answer["html"]
    assert "Be fair." in answer["html"]


def test_annotators_are_refused(acme, as_user):
    assert ask(as_user(acme.annotator), form()).status_code == 403


def test_anonymous_callers_are_sent_to_log_in(client):
    response = ask(client, form())
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_only_post_is_answered(acme, as_user):
    assert as_user(acme.lead).get(URL).status_code == 405


def test_the_csrf_token_is_checked(acme):
    client = Client(enforce_csrf_checks=True)
    client.force_login(acme.lead)
    assert ask(client, form()).status_code == 403


def test_the_sample_is_the_edited_projects_first_prompt(acme, as_user):
    run(acme.project, {"x.jsonl": jsonl(row(1), row(2))})
    html = ask(as_user(acme.lead), form(project=acme.project.pk)).json()["html"]
    assert "Prompt number 1?" in html and "Answer two to 1." in html
    assert SAMPLE_PROMPT not in html


def test_another_organizations_project_never_lends_its_prompt(acme, globex, as_user):
    run(globex.project, {"x.jsonl": jsonl(row(1, text="Globex secret prompt"))})
    html = ask(as_user(acme.lead), form(project=globex.project.pk)).json()["html"]
    assert "Globex secret" not in html
    assert SAMPLE_PROMPT in html


@pytest.mark.parametrize(("mode", "shown"), [("best_worst", 3), ("ranking", 4)])
def test_the_built_in_sample_fits_the_mode(mode, shown, acme, as_user):
    questions = [{"name": "preference", "kind": "preference"}]
    html = ask(as_user(acme.lead), form(questions, mode=mode)).json()["html"]
    assert html.count('class="candidate"') == shown


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("{not json", "JSON object"),
        ("[1, 2]", "JSON object"),
        (json.dumps(form(mode=3)), "'mode' must be text"),
        (json.dumps(form(project="1")), "'project'"),
        (json.dumps(form(guidelines="x" * PREVIEW_MAX_BYTES)), "at most 256 KB"),
    ],
)
def test_a_body_it_cannot_read_is_a_clear_400(body, says, acme, as_user):
    response = ask(as_user(acme.lead), body)
    assert response.status_code == 400
    assert says in response.json()["errors"][0]["message"]


def test_an_invalid_schema_answers_with_its_problems_placed(acme, as_user):
    questions = json.loads(json.dumps(DPO_PAIRWISE.questions))
    questions[0]["labels"][3]["key"] = "b"
    answer = ask(as_user(acme.lead), form(questions)).json()
    assert answer["html"] == ""
    (problem,) = answer["errors"]
    assert problem["question"] == 0 and problem["part"] == "labels" and problem["index"] == 3
    assert problem["field"] == "key"
    assert "key 'b' is already the shortcut of" in problem["message"]


def test_json_that_does_not_parse_is_a_problem_of_the_questions(acme, as_user):
    answer = ask(as_user(acme.lead), form('[{"name": ')).json()
    assert answer["errors"][0]["message"].startswith("questions: not valid JSON")


def test_hostile_labels_tooltips_guidelines_and_layouts_are_inert(acme, as_user):
    hostile = '<img src=x onerror="alert(1)">'
    questions = json.loads(json.dumps(DPO_PAIRWISE.questions))
    questions[0]["labels"][0].update(text=hostile, tooltip=f'" onmouseover="alert(2)" {hostile}')
    layout = '<div style="color: red" onclick="alert(3)">{{text}}<script>alert(4)</script></div>'
    body = form(questions, html_layout=layout, guidelines=f"Read this {hostile}")
    answer = ask(as_user(acme.lead), body).json()
    html = answer["html"]
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "<img" not in html and "<script" not in html
    assert 'title="&quot; onmouseover=&quot;alert(2)&quot; &lt;img' in html
    assert "onclick" not in html and 'onmouseover="' not in html
    assert 'class="potato-layout"' in html and 'class="lyt-0"' in html
    assert answer["css"] == ".potato-layout .lyt-0 { color: red }"


def test_the_preview_draws_the_questions_exactly_as_the_annotate_page(acme, as_user):
    """The same templates: with the project's own questions and prompt, the questions'
    markup is the annotate page's, byte for byte."""
    with scopes_disabled():
        acme.project.questions = RUBRIC.questions
        acme.project.save()
    open_assignment(acme)
    annotate = as_user(acme.annotator).get(reverse("annotation:annotate", args=[acme.project.pk]))
    preview = ask(as_user(acme.lead), form(RUBRIC.questions, project=acme.project.pk))

    def questions_of(html: str) -> str:
        return re.search(r'<fieldset class="question.*?<div class="actions">', html, re.S)[0]

    assert questions_of(preview.json()["html"]) == questions_of(annotate.content.decode())
