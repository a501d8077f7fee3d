"""A lead builds a project's questions in the admin's structured editor, with the keyboard
only, watching the preview; annotators then get exactly that."""

import json

import pytest
from django_scopes import scopes_disabled
from playwright.sync_api import expect

from tasks.models import Project
from tasks.project_templates import DPO_PAIRWISE, RUBRIC
from tests.conftest import log_in_through_the_form, open_page
from tests.factories import PASSWORD, ProjectFactory
from tests.tasks.test_prompt_import import jsonl, row, run

pytestmark = pytest.mark.e2e
SCREENSHOT = "/tmp/question-editor.png"


def tab_to(page, locator, limit: int = 400) -> None:
    """Press Tab until ``locator`` has the focus, as a keyboard user gets there."""
    for _ in range(limit):
        if locator.evaluate("node => node === document.activeElement"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {locator}")


def stored_questions(project_id: int) -> list:
    with scopes_disabled():
        return Project.objects.get(pk=project_id).questions


def test_a_lead_builds_questions_with_the_keyboard_and_annotators_get_them(
    page, browser, live_server, acme
):
    page.set_viewport_size({"width": 1600, "height": 1000})
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    page.goto("/admin/tasks/project/add/")
    page.get_by_role("link", name=DPO_PAIRWISE.title).click()
    expect(page.locator("#qe-q0-labels3-text")).to_have_value("Both Bad")
    page.locator("#id_name").fill("Keyboard study")
    page.locator("#id_status").select_option("active")
    preview = page.locator("#qe-preview")
    expect(preview.locator('label[data-hotkey="e"]')).to_contain_text("Equally Good")

    # A fifth label: A, slightly, with its own shortcut and tooltip.
    tab_to(page, page.get_by_role("button", name="Add label"))
    page.keyboard.press("Enter")
    new_row = page.locator("#qe-q0-labels4")
    expect(new_row.get_by_label("Text")).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type("A is slightly better")
    page.keyboard.press("Tab")
    page.keyboard.type("A_slight")
    page.keyboard.press("Tab")  # Meaning: A already
    expect(new_row.get_by_label("Meaning")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.type("s")
    page.keyboard.press("Tab")
    page.keyboard.type("A is better, but only a little")
    page.keyboard.press("Tab")
    expect(new_row.get_by_label("Strength")).to_be_focused()
    page.keyboard.type("1")
    expect(new_row.get_by_label("Strength")).to_have_value("1")
    slight = preview.locator('label[data-hotkey="s"]')
    expect(slight).to_contain_text("A is slightly better")
    expect(slight.locator("kbd")).to_have_text("s")
    expect(slight).to_have_attribute("title", "A is better, but only a little")

    # A rating question, added and filled in the same way.
    tab_to(page, page.get_by_label("Kind of the new question"))
    page.keyboard.type("r")
    expect(page.get_by_label("Kind of the new question")).to_have_value("rating")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Add question")).to_be_focused()
    page.keyboard.press("Space")
    rating = page.locator("#qe-q3")
    expect(rating.get_by_label("Name (letters, digits, _)")).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type("accuracy")
    page.keyboard.press("Tab")
    page.keyboard.type("How accurate is each response?")
    tab_to(page, rating.get_by_label("Criterion"))
    page.keyboard.type("Every fact and number is right")
    tab_to(page, rating.get_by_label("Label for 1"))
    page.keyboard.type("wrong")
    tab_to(page, rating.get_by_label("Label for 5"))
    page.keyboard.type("all correct")
    question = preview.locator("#q-accuracy")
    expect(question).to_contain_text("How accurate is each response?")
    expect(question).to_contain_text("all correct")
    expect(question.locator("tbody tr")).to_have_count(2)  # a row per response

    # The shortcut works inside the preview, and selects the new label.
    tab_to(page, preview)
    page.keyboard.press("s")
    expect(preview.locator('input[value="A_slight"]')).to_be_checked()
    page.locator("#qe-q0-labels4").scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOT)  # the editor with its preview beside it

    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist .success")).to_be_visible()
    with scopes_disabled():
        project = Project.objects.get(organization=acme.organization, name="Keyboard study")
    labels = project.questions[0]["labels"]
    assert labels[4] == {
        "text": "A is slightly better",
        "value": "A_slight",
        "means": "A",
        "strength": 1,
        "tooltip": "A is better, but only a little",
        "key": "s",
    }
    accuracy = project.questions[3]
    assert accuracy["kind"] == "rating" and accuracy["scale"]["labels"]["5"] == "all correct"

    run(project, {"x.jsonl": jsonl(row(1))})
    context, annotator = open_page(browser, live_server.url)
    try:
        log_in_through_the_form(annotator, acme.annotator.email, PASSWORD)
        annotator.goto(f"/projects/{project.pk}/annotate/")
        label = annotator.locator('#judge-form label[data-hotkey="s"]')
        expect(label).to_contain_text("A is slightly better")
        expect(label.locator("kbd")).to_have_text("s")
        expect(label).to_have_attribute("title", "A is better, but only a little")
        expect(label.locator(".tip")).to_have_text("A is better, but only a little")
        expect(annotator.locator("#q-accuracy")).to_contain_text("How accurate is each response?")
        annotator.keyboard.press("s")
        expect(annotator.locator('input[value="A_slight"]')).to_be_checked()
    finally:
        context.close()
    assert annotator.problems == []


def test_a_conflicting_shortcut_is_shown_at_its_field_and_nothing_is_saved(page, acme):
    project = ProjectFactory(organization=acme.organization, questions=DPO_PAIRWISE.questions)
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    page.goto(f"/admin/tasks/project/{project.pk}/change/")
    key = page.locator("#qe-q0-labels2").get_by_label("Shortcut key")  # Equally Good: e
    key.fill("a")
    conflict = "key 'a' is already the shortcut of preference → 'Response A Preferred'"

    def error_beside_the_key():
        error_id = key.get_attribute("aria-describedby")
        assert error_id, "the key field names its error"
        error = page.locator(f"#{error_id}")
        expect(error).to_contain_text(conflict)
        expect(error).to_have_attribute("role", "alert")
        # in the same field box as the input, right under it (retried: the editor renders
        # the errors again when the preview answers)
        beside = page.locator(f"xpath=//*[@id='{error_id}']/parent::*//input")
        expect(beside).to_have_attribute("id", key.get_attribute("id"))
        expect(key).to_have_attribute("aria-invalid", "true")

    expect(page.locator("#qe-q0-labels2 .qe-error")).to_contain_text(conflict)  # live
    error_beside_the_key()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".errornote")).to_be_visible()  # the admin's "Please correct…"
    key = page.locator("#qe-q0-labels2").get_by_label("Shortcut key")
    expect(key).to_have_value("a")  # the form comes back as typed
    error_beside_the_key()
    assert stored_questions(project.pk) == DPO_PAIRWISE.questions


def test_the_json_view_round_trips_byte_for_byte(page, acme):
    questions = json.loads(json.dumps(RUBRIC.questions))
    questions[1]["description"] = "Précis — “quoted”\nsecond line\ttab"
    questions[2]["weight"] = 0.5
    project = ProjectFactory(organization=acme.organization, questions=questions)
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    page.goto(f"/admin/tasks/project/{project.pk}/change/")
    textarea = page.locator("#id_questions")
    expect(page.locator("#qe-q1-description")).to_have_value(questions[1]["description"])
    served = textarea.input_value()

    page.get_by_role("button", name="Edit as JSON").click()
    expect(textarea).to_be_visible()
    assert textarea.input_value() == served
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist .success")).to_be_visible()
    reopened = page.locator("#id_questions").input_value()
    assert reopened == served
    assert stored_questions(project.pk) == json.loads(reopened)

    # What the editor writes is the same text the server writes: change a field and change
    # it back, and the textarea (rewritten by the editor twice) is as served.
    description = page.locator("#qe-q2-description")
    description.focus()
    page.keyboard.press("End")
    page.keyboard.type("!")
    assert page.locator("#id_questions").input_value() != served
    page.keyboard.press("Backspace")
    assert page.locator("#id_questions").input_value() == served

    # Editing the JSON updates the editor.
    page.get_by_role("button", name="Edit as JSON").click()
    edited = served.replace('"poor"', '"very poor"', 1)
    page.locator("#id_questions").fill(edited)
    expect(page.locator("#qe-q1-scale-label1")).to_have_value("very poor")
