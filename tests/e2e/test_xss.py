"""Every string a tenant types stays text, in the real browser (issue 8).

The peer product's advisories CVE-2026-22033 and CVE-2025-25296: prompts, responses,
guidelines, labels, tooltips and keyboard shortcuts rendered unescaped. Here one project has
a hostile string in each of them, and in everything else a person or an import can set
(names, descriptions, placeholders, the system prompt, the model name, answers, reasoning,
discussion notes, e-mail addresses). An annotator and a lead walk through every page that
shows them, hover what can be hovered and press the shortcuts: no dialog opens, no injected
script or handler runs or even exists in the page, and the hostile text is on screen as text.
"""

from html.parser import HTMLParser
from pathlib import Path

import pytest
from django_scopes import scope, scopes_disabled
from playwright.sync_api import expect

from annotation import adjudication
from annotation.allocator import next_assignment
from annotation.models import Judgment
from annotation.services import submit_judgment
from exports import services as exports_services
from qc import services as qc_services
from tasks.models import Item, Role
from tasks.schema import QuestionSchemaError, validate_questions
from tests.conftest import client_for, log_in_through_the_form
from tests.e2e.test_exports import eager  # noqa: F401 — the fixture: report and export jobs inline
from tests.factories import PASSWORD, ProjectFactory, member
from tests.tasks.test_prompt_import import jsonl, row, run

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-results"

SCRIPT = "</script><script>window.__xss=1</script>"
ATTRIBUTE = '" onmouseover="window.__xss=2" x="'
IMAGE = '\'><img src=x onerror="window.__xss=3">'
SVG = "<svg onload=alert(4)>"
LINK = "javascript:alert(5)"
HOSTILE = SCRIPT + ATTRIBUTE + IMAGE + SVG
SHORT = ATTRIBUTE + SVG  # for fields kept under 100 characters (rating point labels)


def hostile(where: str) -> str:
    """The payloads, named after the field that holds them (so a test can tell them apart)."""
    return f"{where}: {HOSTILE}"


# Shortcuts are single characters (a longer one is refused, see the test below): the most
# hostile ones are the characters that close an attribute or open a tag.
KEYS = {"A": '"', "B": "<", "tie": "'", "both_bad": "&", "helpful": ">", "honest": "/"}
GUIDELINES = f"""# Guide {SCRIPT}

Plain words {ATTRIBUTE} and {IMAGE} and {SVG}.

[A markdown link]({LINK}) and <a href="{LINK}" onmouseover="window.__xss=6">an HTML link</a>.
"""
QUESTIONS = [
    {
        "name": "preference",
        "kind": "preference",
        "description": hostile("Which is better"),
        "labels": [
            {
                "text": hostile("A wins"),
                "means": "A",
                "key": KEYS["A"],
                "tooltip": hostile("Tip A"),
            },
            {
                "text": hostile("B wins"),
                "means": "B",
                "key": KEYS["B"],
                "tooltip": hostile("Tip B"),
            },
            {
                "text": hostile("Tie"),
                "means": "tie",
                "key": KEYS["tie"],
                "tooltip": hostile("Tip T"),
            },
            {"text": hostile("Both bad"), "means": "both_bad", "key": KEYS["both_bad"]},
        ],
    },
    {
        "name": "dimension",
        "kind": "choice",
        "description": hostile("Dimension"),
        "options": [
            {"value": hostile("Helpful"), "key": KEYS["helpful"], "tooltip": hostile("Tip H")},
            {"value": hostile("Honest"), "text": hostile("Honest text"), "key": KEYS["honest"]},
        ],
    },
    {
        "name": "quality",
        "kind": "rating",
        "required": False,
        "criterion": hostile("Criterion"),
        "scale": {"min": 1, "max": 3, "labels": {"1": SHORT, "3": SHORT}},
    },
    {
        "name": "reasoning",
        "kind": "text",
        "description": hostile("Why"),
        "placeholder": hostile("Placeholder why"),
    },
    {
        "name": "summary",
        "kind": "text",
        "multiline": False,
        "placeholder": hostile("Placeholder summary"),
    },
]
LABEL = {q["means"]: q["text"] for q in QUESTIONS[0]["labels"]}
TOOLTIP = {q["means"]: q.get("tooltip", "") for q in QUESTIONS[0]["labels"]}
OPTION = {"helpful": hostile("Helpful"), "honest": hostile("Honest")}


def conversation(n: int) -> dict:
    return {
        "id": f"p{n} {SVG}",
        "messages": [
            {"role": "system", "content": f"{hostile('System prompt')} (prompt {n})"},
            {"role": "user", "content": f"{hostile('Prompt')} ({n})\n\n[A prompt link]({LINK})"},
        ],
        "responses": [
            {
                "text": f"{hostile('Response one')} ({n})\n\n[A response link]({LINK})",
                "model": hostile("Model"),
            },
            {"text": f"{hostile('Response two')} ({n})", "model": SVG},
        ],
    }


class Hostile:
    """The tenant with a hostile organization name, a hostile project of two items and a
    second annotator with a hostile e-mail address who judged both items (a tie on one of
    them, ``disputed`` once the tenant's annotator prefers A)."""

    def __init__(self, tenant):
        self.tenant = tenant
        organization = tenant.organization
        with scopes_disabled():
            organization.name = hostile("Organization")
            organization.save()
        self.project = ProjectFactory(
            organization=organization,
            name=hostile("Project"),
            description=hostile("Description"),
            guidelines=GUIDELINES,
            questions=validate_questions(QUESTIONS, mode="pairwise"),
            annotations_per_item=2,
            discussion_visible_to_annotators=True,
        )
        run(self.project, {"hostile.jsonl": jsonl(conversation(1), conversation(2))})
        self.other = member(organization, Role.ANNOTATOR, email=f"{SVG}{ATTRIBUTE}@x.org")
        # the allocator picks the order: the tied item is the one disputed for sure
        self.disputed = self.judge(self.other, "tie", "honest").item
        self.judge(self.other, "B", "honest")

    def judge(self, annotator, means: str, option: str) -> Judgment:
        """One judgment through the service the annotate page calls."""
        with scope(organization=self.tenant.organization):
            assignment = next_assignment(project=self.project, annotator=annotator).assignment
            return submit_judgment(
                project=self.project,
                assignment_id=assignment.pk,
                annotator=annotator,
                answers={
                    "preference": LABEL[means],
                    "dimension": OPTION[option],
                    "reasoning": hostile("Reasoning of the service"),
                    "summary": hostile("Summary of the service"),
                },
                time_spent_ms=1000,
            )

    def discuss(self, item: Item) -> None:
        """A lead's note and final decision on the item, through their services."""
        lead = self.tenant.lead
        with scope(organization=self.tenant.organization):
            adjudication.add_note(item=item, author=lead, text=hostile("Note of the service"))
            candidates = adjudication.item_candidates(item)
            fields = adjudication.parse_decision(
                item, candidates, {"decision": "tie", "note": hostile("Decision of the service")}
            )
            adjudication.decide(item=item, lead=lead, fields=fields)


@pytest.fixture
def hostile_tenant(acme):
    return Hostile(acme)


@pytest.fixture
def dialogs(page):
    """Every alert / confirm / prompt the page opens (dismissed, so nothing blocks)."""
    opened = []

    def record(dialog):
        opened.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    return opened


# What an injection would leave in the document even where the CSP stops it from running.
INJECTED = """() => {
  const handlers = Array.from(document.querySelectorAll("*")).filter((e) =>
    Array.from(e.attributes).some((a) => a.name.startsWith("on")));
  const links = Array.from(document.querySelectorAll("[href], [src], [action], [formaction]"))
    .filter((e) => ["href", "src", "action", "formaction"].some((name) =>
      /^\\s*javascript:/i.test(e.getAttribute(name) || "")));
  const scripts = Array.from(document.scripts).filter((s) =>
    !s.src.startsWith(location.origin + "/static/"));
  const images = Array.from(document.images).filter((i) =>
    !i.src.startsWith(location.origin + "/static/"));
  return [...handlers, ...links, ...scripts, ...images].map((e) => e.outerHTML.slice(0, 160));
}"""


def assert_inert(page, dialogs) -> None:
    """No dialog, no injected script ran, none is in the document, nothing went wrong."""
    page.wait_for_load_state("load")
    assert dialogs == [], dialogs
    assert page.evaluate("window.__xss") is None
    assert page.evaluate(INJECTED) == []
    assert page.problems == [], page.problems


def hover_everything(page, selector: str) -> None:
    """Point at every visible element a handler could hang on (labels, tooltips, buttons,
    links, chart bars)."""
    hovered = 0
    for element in page.locator(selector).all():
        if element.is_visible():
            element.hover(force=True)  # a label drawn over a chart bar takes the pointer: fine
            hovered += 1
    assert hovered, f"nothing to hover at {selector}"


def test_a_shortcut_longer_than_one_key_is_refused():
    for key in (ATTRIBUTE, "</script>", SVG):
        schema = [
            {
                "name": "preference",
                "kind": "preference",
                "labels": [
                    {"text": "A", "means": "A", "key": key},
                    {"text": "B", "means": "B"},
                ],
            }
        ]
        with pytest.raises(QuestionSchemaError) as refused:
            validate_questions(schema)
        assert "must be a single character" in str(refused.value.errors_list)


class Markup(HTMLParser):
    """What a page's HTML would make a browser build: the elements and attributes that run
    or load something."""

    def __init__(self, html: str):
        super().__init__()
        self.found: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        ours = (attributes.get("src") or "").startswith("/static/")
        if (tag in ("script", "img") and not ours) or tag in ("iframe", "object", "embed", "base"):
            self.found.append(f"<{tag} {attributes}>")
        for name, value in attrs:
            if name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}={value!r}>")


@pytest.mark.usefixtures("eager")
def test_server_rendered_pages_hold_no_hostile_markup(
    hostile_tenant, acme, django_capture_on_commit_callbacks
):
    """Every page that shows the hostile strings, as the server sends it."""
    project = hostile_tenant.project
    hostile_tenant.judge(acme.annotator, "A", "helpful")
    hostile_tenant.judge(acme.annotator, "A", "helpful")
    first = hostile_tenant.disputed
    hostile_tenant.discuss(first)
    # the jobs are queued on commit, which a test's transaction never reaches
    with scope(organization=acme.organization), django_capture_on_commit_callbacks(execute=True):
        qc_services.request_report(project, created_by=acme.lead)
        exports_services.request_export(
            project, "trl-conversational", exports_services.options_from({}), created_by=acme.lead
        )
    annotator, lead = client_for(acme.annotator), client_for(acme.lead)
    with scopes_disabled():
        judgment = Judgment.objects.get(item=first, annotator=acme.annotator)
    p = f"/projects/{project.pk}"
    pages = [  # who, where, and what shows the page is the full one
        (annotator, "/", 'id="projects"'),
        (annotator, f"{p}/annotate/", 'id="help"'),  # guidelines and shortcuts, no item left
        (annotator, f"{p}/history/", 'id="history"'),
        (annotator, f"{p}/history/{judgment.pk}/", 'id="judge-form"'),  # the item, the form
        (annotator, f"{p}/discussion/{first.pk}/", 'id="decision-summary"'),
        (lead, f"{p}/", 'class="guidelines"'),
        (lead, f"{p}/review/?show=decided", 'id="review-queue"'),
        (lead, f"{p}/review/{first.pk}/", 'class="judgment-card"'),
        (lead, f"{p}/qc/", 'id="qc-labels"'),
        (lead, f"{p}/exports/", 'id="exports"'),
    ]
    for client, url, landmark in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert landmark in html, url
        assert "&lt;svg onload=alert(4)&gt;" in html, url  # shown, as text
        assert Markup(html).found == [], url


def test_annotator_pages_show_hostile_strings_as_text(page, dialogs, hostile_tenant, acme):
    hostile_tenant.discuss(hostile_tenant.disputed)
    log_in_through_the_form(page, acme.annotator.email, PASSWORD)

    page.goto("/")
    listed = page.locator("#projects tbody tr").filter(has_text=hostile("Project"))
    expect(listed).to_have_count(1)
    expect(page.locator("h1")).to_contain_text(hostile("Organization"))
    hover_everything(page, "#projects a, #projects progress")
    assert_inert(page, dialogs)

    listed.get_by_role("link", name="Annotate").click()
    page.wait_for_load_state()  # the page's script (deferred) listens for the keys
    form = page.locator("#judge-form")
    expect(page.locator(".annotate-head h1")).to_have_text(hostile("Project"))
    expect(page.locator(".guidelines")).to_contain_text(f"Plain words {ATTRIBUTE} and")
    expect(page.locator(".guidelines")).to_contain_text("A markdown link and an HTML link.")
    expect(page.locator(".conversation")).to_contain_text(hostile("System prompt"))
    expect(page.locator(".conversation")).to_contain_text(hostile("Prompt"))
    for means, label in LABEL.items():
        choice = form.locator(f'label:has(input[data-means="{means}"])')
        expect(choice).to_contain_text(label)
        expect(choice.locator("kbd")).to_have_text(KEYS[means])
        expect(choice).to_have_attribute("title", TOOLTIP[means])
    expect(form.locator("#q-dimension")).to_contain_text(hostile("Honest text"))
    expect(form.locator("#q-quality")).to_contain_text(hostile("Criterion"))
    expect(form.locator("#text-reasoning")).to_have_attribute(
        "placeholder", hostile("Placeholder why")
    )
    expect(form.locator("#text-summary")).to_have_attribute(
        "placeholder", hostile("Placeholder summary")
    )
    page.keyboard.press("?")
    expect(page.locator("dialog#help")).to_contain_text(LABEL["both_bad"])
    expect(page.locator("dialog#help tr").first).to_contain_text(f"{KEYS['A']}{LABEL['A']}")
    page.keyboard.press("Escape")
    hover_everything(page, "main label, main button, main a, main [title], main kbd, main input")
    assert_inert(page, dialogs)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "xss-annotate.png"), full_page=True)

    for means, option in (("A", "helpful"), ("B", "honest")):
        judging = form.get_attribute("data-assignment")
        expect(form).to_contain_text(hostile("Response one"))
        expect(form).to_contain_text(hostile("Response two"))
        for other in LABEL:  # every hostile shortcut works; the last one pressed counts
            page.keyboard.press(KEYS[other])
            expect(form.locator(f'input[data-means="{other}"]')).to_be_checked()
        page.keyboard.press(KEYS[means])
        expect(form.locator(f'input[data-means="{means}"]')).to_be_checked()
        for other in OPTION:
            page.keyboard.press(KEYS[other])
            expect(form.locator("#q-dimension input:checked")).to_have_value(OPTION[other])
        page.keyboard.press(KEYS[option])
        expect(form.locator("#q-dimension input:checked")).to_have_value(OPTION[option])
        form.locator("#text-reasoning").fill(hostile("Reasoning typed"))
        form.locator("#text-summary").fill(hostile("Summary typed"))
        page.keyboard.press("Control+Enter")
        expect(page.locator("#flash")).to_have_text("Saved.")
        expect(form.or_(page.locator("#done"))).not_to_have_attribute("data-assignment", judging)
        # the next item arrived as a fragment, put in the page by the script
        hover_everything(page, "#workspace label, #workspace button, #workspace a")
        assert_inert(page, dialogs)
    expect(page.locator("#done")).to_be_visible()

    page.get_by_role("link", name="History").click()
    rows = page.locator("#history tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text(LABEL["B"])
    expect(rows.last).to_contain_text(LABEL["A"])
    expect(page.locator("#history")).to_contain_text(hostile("Prompt")[:80])
    assert_inert(page, dialogs)

    with scopes_disabled():
        disputed = Judgment.objects.get(item=hostile_tenant.disputed, annotator=acme.annotator)
    judged = page.locator(f'tr[data-judgment="{disputed.pk}"]')
    judged.get_by_role("link", name="Open / edit").click()
    page.wait_for_load_state()
    expect(page.locator("#text-reasoning")).to_have_value(hostile("Reasoning typed"))
    expect(page.locator("#text-summary")).to_have_value(hostile("Summary typed"))
    hover_everything(page, "main label, main button, main a")
    assert_inert(page, dialogs)

    page.go_back()
    page.locator(f'tr[data-judgment="{disputed.pk}"]').get_by_role(
        "link", name="Discussion"
    ).click()
    expect(page.locator("#discussion .note")).to_contain_text(hostile("Note of the service"))
    expect(page.locator("#decision")).to_contain_text(hostile("Decision of the service"))
    expect(page.locator("#your-judgment")).to_be_visible()
    expect(page.locator(".candidate").first).to_contain_text(hostile("Model"))
    hover_everything(page, "main a, main .candidate, main .note")
    assert_inert(page, dialogs)


@pytest.mark.usefixtures("eager")
def test_lead_pages_show_hostile_strings_as_text(page, dialogs, hostile_tenant, acme):
    project, other = hostile_tenant.project, hostile_tenant.other
    hostile_tenant.judge(acme.annotator, "A", "helpful")
    hostile_tenant.judge(acme.annotator, "A", "helpful")
    disputed = hostile_tenant.disputed
    log_in_through_the_form(page, acme.lead.email, PASSWORD)

    page.goto(f"/projects/{project.pk}/")
    expect(page.locator("main h1")).to_contain_text(hostile("Project"))
    expect(page.locator("main")).to_contain_text(hostile("Description"))
    expect(page.locator(".guidelines")).to_contain_text(f"# Guide {SCRIPT}")  # the source
    hover_everything(page, "main a, main .guidelines")
    assert_inert(page, dialogs)

    page.get_by_role("link", name="Review disagreements").click()
    queued = page.locator(f'#review-queue tr[data-item="{disputed.pk}"]')
    expect(queued).to_contain_text(SVG)  # the external id
    expect(queued).to_contain_text(hostile("Prompt")[:80])
    hover_everything(page, "main a, main tr")
    assert_inert(page, dialogs)

    queued.get_by_role("link", name=f"#{disputed.pk}").click()
    page.wait_for_load_state()  # the page's script (deferred) listens for the keys
    expect(page.locator(".judgment-card")).to_have_count(2)
    card = page.locator(".judgment-card").filter(has_text=other.email)
    expect(card).to_have_attribute("data-annotator", other.email)
    for text in (
        LABEL["tie"],
        OPTION["honest"],
        hostile("Reasoning of the service"),
        hostile("Summary of the service"),
    ):
        expect(card).to_contain_text(text)
    expect(page.locator(".conversation")).to_contain_text(hostile("System prompt"))
    expect(page.locator(".candidate").filter(has_text=hostile("Model"))).to_have_count(1)
    hover_everything(page, "main a, main label, main button, main .judgment-card, main .candidate")
    assert_inert(page, dialogs)

    page.keyboard.press("n")
    expect(page.locator("#note-text")).to_be_focused()
    page.locator("#note-text").fill(hostile("Note typed"))
    page.keyboard.press("Control+Enter")
    expect(page.locator("#discussion .note")).to_contain_text(hostile("Note typed"))
    page.wait_for_load_state()
    page.keyboard.press("t")
    expect(page.locator('#decision-form input[value="tie"]')).to_be_checked()
    page.locator("#decision-note").fill(hostile("Decision typed"))
    page.keyboard.press("Control+Enter")
    expect(page.locator(".messages")).to_contain_text("Decision saved.")
    page.goto(f"/projects/{project.pk}/review/{disputed.pk}/")
    expect(page.locator("#decision")).to_contain_text(hostile("Decision typed"))
    expect(page.locator("#decision-note")).to_have_value(hostile("Decision typed"))
    hover_everything(page, "main .note, main #decision")
    assert_inert(page, dialogs)

    page.goto(f"/projects/{project.pk}/")
    page.get_by_role("link", name="Quality control").click()
    page.get_by_role("button", name="Compute a fresh report").click()
    expect(page.locator("#qc-summary")).to_contain_text("4")
    for section, text in (
        ("#qc-labels", LABEL["A"]),
        ("#qc-labels", LABEL["tie"]),
        ("#qc-labels", OPTION["honest"]),
        ("#qc-annotators", other.email),
        ("#qc-kappa", other.email),
    ):
        expect(page.locator(section)).to_contain_text(text)
    hover_everything(page, "main svg rect, main svg text, main a, main td")
    assert_inert(page, dialogs)

    page.goto(f"/projects/{project.pk}/")
    page.get_by_role("link", name="Exports").click()
    page.get_by_label("Format").select_option("trl-conversational")
    page.get_by_label('Only a dimension ("question=value")').fill(f"dimension={OPTION['helpful']}")
    page.get_by_role("button", name="Export").click()
    expect(page.locator("#exports tbody tr").first).to_contain_text("Succeeded")
    expect(page.locator("main h1")).to_contain_text(hostile("Project"))
    assert_inert(page, dialogs)
    refused = '"><script>alert(6)</script>'  # no "=": refused, and shown again in the box
    page.get_by_label('Only a dimension ("question=value")').fill(refused)
    page.get_by_role("button", name="Export").click()
    expect(page.locator("#export-errors")).to_be_visible()
    expect(page.get_by_label('Only a dimension ("question=value")')).to_have_value(refused)
    # the refusal is a 400, which Chromium reports on the console: that one is expected
    page.problems.remove(
        "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    )
    hover_everything(page, "main a, main button, main input")
    assert_inert(page, dialogs)


def test_a_potato_layout_shows_hostile_values_as_text(page, dialogs, acme):
    """A lead's layout keeps its structure, not its handlers; the row's values are text."""
    project = ProjectFactory(
        organization=acme.organization,
        candidate_fields=["response_a", "response_b"],
        html_layout=(
            '<div style="display: flex" onmouseover="window.__xss=7"><p>{{text}}</p>'
            '<div class="{{response_a}}" title="{{response_a}}">{{response_a}}</div>'
            '<a href="javascript:alert(8)">{{response_b}}</a>'
            '<script>window.__xss=9</script><img src=x onerror="window.__xss=10"></div>'
        ),
    )
    texts = {"text": "Layout prompt", "response_a": "Layout A", "response_b": "Layout B"}
    run(project, {"d.jsonl": jsonl(row(1, **{k: hostile(v) for k, v in texts.items()}))})
    log_in_through_the_form(page, acme.annotator.email, PASSWORD)
    page.goto(f"/projects/{project.pk}/annotate/")
    page.wait_for_load_state()
    layout = page.locator("#item")
    for text in texts.values():
        expect(layout).to_contain_text(hostile(text))
    hover_everything(page, "#item *")
    assert_inert(page, dialogs)
    page.keyboard.press("a")
    page.keyboard.press("Enter")
    expect(page.locator("#done")).to_be_visible()
    assert_inert(page, dialogs)
