"""Chat & Choose in a real browser: an expert chats with SmolLM2 (llama.cpp's server), sees
each turn's two replies stream in, judges with the keyboard, corrects one, branches; the
tree, items and judgments are in the database and the TRL conversational export carries
the chosen path as each turn's prefix. Faults against the fake streaming server: a server
that stops mid-reply, and one expert's slow generation beside another's quick one."""

import json
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django_scopes import scope, scopes_disabled
from playwright.sync_api import expect

from annotation.models import Judgment
from chat import jobs
from chat.models import Conversation, Message
from tasks.models import Candidate, Item
from tests.chat.test_chat import make_chat
from tests.conftest import log_in_through_the_form, open_page
from tests.factories import PASSWORD, member
from tests.fake_llm import FakeStreamingLLM

pytestmark = pytest.mark.e2e


@pytest.fixture
def worker(monkeypatch):
    """The test plays the Celery worker: each turn sent runs in a thread of its own, as
    on a worker with several processes, so the page's requests go on meanwhile."""
    threads = []

    def run(task_args, **options):
        def work():
            try:
                jobs.generate_turn(*task_args)
            finally:
                connection.close()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        threads.append(thread)

    monkeypatch.setattr(jobs.generate_turn, "apply_async", run)
    yield threads
    for thread in threads:
        thread.join(timeout=60)


def watch_events(page) -> list[dict]:
    """Every events answer the page received, in order, each with the key its poll sent
    (``sent_key``: the page's key to the stream, chat/middleware.py)."""
    seen: list[dict] = []

    def keep(response):
        if "/events/" in response.url and response.ok:
            key = parse_qs(urlsplit(response.url).query).get("key", [""])[0]
            try:
                seen.append({**response.json(), "sent_key": key})
            except Exception:  # noqa: BLE001 — the page reloaded before the body was read
                return

    page.on("response", keep)
    return seen


def start_chat(page, project):
    page.goto(f"/projects/{project.pk}/chat/")
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#turn-text")).to_be_visible()
    page.wait_for_load_state("load")  # the page's scripts (deferred) listen from here on


def replies_ready(page, timeout=20_000) -> int:
    """The page shows the turn's replies to judge (and its scripts running). A small real
    model can give the same reply at every temperature: the page says so and the expert
    retries (new seeds), as a person would; the third time it must have worked. Returns
    how many times the expert retried (a Retry loads the page again)."""
    same = page.get_by_role("alert").filter(has_text="gave the same reply every time")
    retried = 0
    for _ in range(3):
        expect(page.locator("#judge-form").or_(same)).to_be_visible(timeout=timeout)
        if not same.is_visible():
            break
        same.get_by_role("button", name="Retry").click()
        retried += 1
    expect(page.locator("#judge-form")).to_be_visible(timeout=timeout)
    page.wait_for_load_state("load")
    return retried


def write(page, text):
    page.locator("#turn-text").fill(text)
    page.locator("#turn-text").press("Control+Enter")


def test_expert_chats_judges_corrects_and_branches_with_smollm2(
    page, acme, llama_server, worker, tmp_path
):
    from tests.exports.test_formats import export, load

    project, endpoint = make_chat(acme, llama_server)
    with scopes_disabled():
        # llama-cpp-python's server answers one request at a time (a second one interrupts
        # the first): one slot, so the two replies stream one after the other.
        endpoint.model, endpoint.max_concurrent_requests = "smollm2", 1
        endpoint.save()
        from tasks.models import GenerationRecipe

        GenerationRecipe.objects.filter(organization=acme.organization).update(
            variants=[
                {"name": "calm", "temperature": 0.3, "max_tokens": 40, "seed": 1},
                {"name": "lively", "temperature": 1.0, "max_tokens": 40, "seed": 2},
            ]
        )
    seen = watch_events(page)
    log_in_through_the_form(page, acme.annotator.email, PASSWORD)
    start_chat(page, project)
    page.evaluate("window.samePage = true")

    write(page, "What is the capital of France?")
    expect(page.locator("#stream")).to_be_visible()
    if not replies_ready(page, 60_000):
        # The replies took the place of the stream in the page: it was not loaded again.
        assert page.evaluate("window.samePage === true")
    # The page got tokens while the replies were being written, before the end.
    streamed = [
        e
        for answer in seen
        if not any(x["kind"] == "end" for x in answer["events"])
        for e in answer["events"]
        if e["kind"] == "token"
    ]
    assert {e["reply"] for e in streamed} == {0, 1}, seen
    assert all(answer["sent_key"] for answer in seen)  # every poll may take the short way
    expect(page.locator(".candidate")).to_have_count(2)
    page.keyboard.press("a")  # "A is much better"
    page.keyboard.press("Enter")
    expect(page.locator("#turn-text")).to_be_visible()
    expect(page.locator("#transcript .turn-assistant")).to_have_count(1)

    write(page, "Tell me one fact about it.")
    replies_ready(page, 60_000)
    page.locator("#q-fix summary").click()
    page.locator("#correction").fill("Paris is on the Seine.")
    page.keyboard.press("Escape")
    page.keyboard.press("d")  # "B is slightly better"
    page.keyboard.press("Enter")
    expect(page.locator("#transcript .turn-assistant.corrected")).to_contain_text(
        "Paris is on the Seine."
    )

    # Back to the first turn: go on from its other reply.
    first_other = page.locator("#transcript .turn-assistant").first.locator(".other-replies")
    first_other.locator("summary").click()
    first_other.get_by_role("button", name="Continue from this reply").click()
    # the system prompt, the question, the other reply
    expect(page.locator("#transcript .turn")).to_have_count(3)
    expect(page.locator("#turn-text")).to_be_visible()

    with scopes_disabled():
        conversation = Conversation.objects.get(project=project)
        users = list(Message.objects.filter(conversation=conversation, role="user"))
        replies = Message.objects.filter(conversation=conversation, role="assistant")
        assert len(users) == 2 and replies.count() == 5  # 2 + 2 + the correction
        first_chosen = replies.get(parent=users[0], chosen=True)
        assert conversation.current.parent_id == users[0].pk
        assert conversation.current.pk != first_chosen.pk
        judgments = Judgment.objects.filter(annotator=acme.annotator).order_by("pk")
        assert [j.strength for j in judgments] == [3, 1]
        assert Candidate.objects.get(pk=judgments[1].corrected_id).text == "Paris is on the Seine."
        assert Item.objects.filter(project=project).count() == 2

    export(project, "trl-conversational", tmp_path / "conv")
    rows = [json.loads(x) for x in (tmp_path / "conv" / "train.jsonl").read_text().splitlines()]
    second = next(r for r in rows if len(r["prompt"]) == 4)
    assert second["prompt"][2] == {"role": "assistant", "content": first_chosen.text}
    from trl.data_utils import is_conversational

    assert all(
        is_conversational(r) for r in load("json", tmp_path / "conv" / "train.jsonl", tmp_path)
    )


@pytest.fixture
def fake():
    server = FakeStreamingLLM(tokens=30, interval=0.02)
    yield server
    server.close()


def test_a_server_that_stops_mid_reply_says_so_and_retry_works(page, acme, fake, worker):
    project, _ = make_chat(acme, fake.url)
    fake.break_after = 5
    log_in_through_the_form(page, acme.annotator.email, PASSWORD)
    start_chat(page, project)
    write(page, "Hello")
    expect(page.locator("#turn-failed")).to_contain_text(
        "The LLM server stopped in the middle of a reply.", timeout=20_000
    )
    fake.break_after = None
    page.locator("#retry-button").click()
    replies_ready(page)
    expect(page.locator(".candidate")).to_have_count(2)


def test_one_experts_slow_generation_does_not_hold_up_another(
    page, browser, live_server, acme, fake, worker
):
    project, endpoint = make_chat(acme, fake.url)
    endpoint.max_concurrent_requests = 4  # room for both experts' replies on the server
    endpoint.save()
    fake.slow_seconds = 8
    log_in_through_the_form(page, acme.annotator.email, PASSWORD)
    start_chat(page, project)
    write(page, "Please be SLOW")
    expect(page.locator("#stream")).to_be_visible()

    other = member(acme.organization)
    context, second = open_page(browser, live_server.url)
    try:
        log_in_through_the_form(second, other.email, PASSWORD)
        start_chat(second, project)
        write(second, "Quick one")
        expect(second.locator("#judge-form")).to_be_visible(timeout=5_000)
        expect(page.locator("#stream")).to_be_visible()  # the slow one is still writing
        assert second.problems == []
    finally:
        context.close()
    replies_ready(page)
    with scope(organization=acme.organization):
        assert Item.objects.filter(project=project).count() == 2
