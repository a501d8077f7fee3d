"""Chat & Choose, as an expert and a lead see it: a turn's replies stream in and become an
item with its candidates; the judgment (with strength, a correction) moves the
conversation on; branching, limits, stopping, a server that goes away mid-reply; the data
every existing feature reads (the TRL conversational export) and the tree download."""

import itertools
import json
import re
import time

import pytest
import redis
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from annotation.models import Assignment, Judgment
from chat import services, streaming
from chat.models import ChatTurn, Conversation, Message
from tasks.models import Candidate, GenerationRecipe, Item, LLMEndpoint, Project, Prompt
from tests.fake_llm import INTERNAL_BODY, FakeLLM, FakeStreamingLLM, LocalServer, QuietHandler
from tests.llm_server import free_port

pytestmark = pytest.mark.django_db

GRADED = [
    {"text": "A is much better", "means": "A", "key": "a", "strength": 3},
    {"text": "A is slightly better", "means": "A", "key": "s", "strength": 1},
    {"text": "B is slightly better", "means": "B", "key": "d", "strength": 1},
    {"text": "B is much better", "means": "B", "key": "b", "strength": 3},
    {"text": "Tie", "means": "tie", "key": "t"},
]


@pytest.fixture
def fake():
    server = FakeStreamingLLM(tokens=8, interval=0.005)
    yield server
    server.close()


def make_chat(tenant, url, *, replies=2, max_turns=3, concurrent=4):
    endpoint, _ = LLMEndpoint.objects.get_or_create(
        name="fake", defaults={"base_url": url, "model": "fake-model", "all_organizations": True}
    )
    with scope(organization=tenant.organization):
        GenerationRecipe.objects.get_or_create(
            organization=tenant.organization,
            name="Four",
            defaults={
                "variants": [
                    {"name": f"v{n}", "temperature": 0.2 * n, "max_tokens": 32, "seed": n}
                    for n in range(1, 5)
                ]
            },
        )
        project = tenant.project
        project.questions = [
            {"name": "preference", "kind": "preference", "labels": GRADED},
            {"name": "fix", "kind": "correction"},
        ]
        project.save()
        services.save_settings(
            project=project,
            endpoints=[endpoint],
            recipes=["Four"],
            system_prompt="Be kind.",
            replies_per_turn=replies,
            max_turns=max_turns,
            concurrent_replies=concurrent,
        )
        project.refresh_from_db()
    return project, endpoint


@pytest.fixture
def chat(acme, fake):
    project, endpoint = make_chat(acme, fake.url)
    return project, endpoint


def start(tenant, project, endpoint, **kwargs):
    with scope(organization=tenant.organization):
        return services.start_conversation(
            project=project,
            expert=tenant.annotator,
            endpoint_id=endpoint.pk,
            recipe_name="Four",
            **kwargs,
        )


def say(tenant, conversation, text) -> ChatTurn:
    """The expert writes a message and the worker answers it (run here)."""
    with scope(organization=tenant.organization):
        turn = services.send_turn(
            conversation_id=conversation.pk, expert=tenant.annotator, text=text
        )
        return services.run_turn(turn.pk)


def judge(tenant, conversation, **answers):
    with scope(organization=tenant.organization):
        return services.judge_turn(
            conversation_id=conversation.pk, expert=tenant.annotator, answers=answers
        )


def current(conversation) -> Message:
    with scopes_disabled():
        return Conversation.objects.get(pk=conversation.pk).current


def test_a_turn_becomes_a_prompt_with_the_prefix_and_an_item_of_its_replies(acme, chat):
    project, endpoint = chat
    conversation = start(acme, project, endpoint)
    turn = say(acme, conversation, "What is <b>tea</b>?")
    assert turn.status == "succeeded", turn.error
    with scopes_disabled():
        prompt = Prompt.objects.get(project=project)
        assert prompt.messages == [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "What is <b>tea</b>?"},
        ]
        item = Item.objects.get(prompt=prompt)
        replies = list(Candidate.objects.filter(prompt=prompt))
        assert len(replies) == 2 and item.mode == "pairwise"
        assert {c.source for c in replies} == {"chat"}
        assert all(c.model == "fake-model" and c.parameters["recipe"] == "Four" for c in replies)
        assert {c.parameters["name"] for c in replies} == {"v1", "v2"}
        # the expert's own assignment on the turn's item, counted by the allocator
        assignment = Assignment.objects.get(item=item)
        assert assignment.annotator == acme.annotator and item.assignment_count == 1
    events = streaming.read(turn.pk)
    tokens = [e for e in events if e["kind"] == "token"]
    assert tokens and events[-1] == {**events[-1], "kind": "end", "status": "succeeded"}
    streamed = {r: "".join(e["text"] for e in tokens if e["reply"] == r) for r in (0, 1)}
    assert sorted(streamed.values()) == sorted(c.text for c in replies)


def test_judging_stores_the_strength_and_continues_from_the_preferred_reply(acme, chat):
    project, endpoint = chat
    conversation = start(acme, project, endpoint)
    say(acme, conversation, "Hello")
    with scopes_disabled():
        order = Assignment.objects.get(annotator=acme.annotator).display_order
    judgment = judge(acme, conversation, preference="B is slightly better")
    assert judgment.chosen_id == order[1] and judgment.rejected_id == order[0]
    assert judgment.strength == 1 and judgment.outcome == "preferred"
    now = current(conversation)
    assert now.candidate_id == order[1] and now.chosen
    turn = say(acme, conversation, "And then?")
    with scopes_disabled():
        second = Prompt.objects.get(pk=Item.objects.get(pk=turn.item_id).prompt_id)
    assert [m["role"] for m in second.messages] == ["system", "user", "assistant", "user"]
    assert second.messages[2]["content"] == now.text


def test_a_correction_is_the_reply_the_conversation_goes_on_from(acme, chat):
    project, endpoint = chat
    conversation = start(acme, project, endpoint)
    say(acme, conversation, "Hello")
    judge(acme, conversation, preference="A is much better", fix="Hello! How can I help?")
    now = current(conversation)
    assert now.corrected and now.chosen and now.text == "Hello! How can I help?"
    with scopes_disabled():
        assert Candidate.objects.get(pk=now.candidate_id).source == "corrected"
        assert now.parent.children.count() == 3  # two replies and the correction


def test_replies_cannot_be_skipped_and_the_turn_limit_holds(acme, fake):
    project, endpoint = make_chat(acme, fake.url, max_turns=1)
    conversation = start(acme, project, endpoint)
    say(acme, conversation, "One")
    with scope(organization=acme.organization), pytest.raises(services.ChatRefused, match="Judge"):
        services.send_turn(conversation_id=conversation.pk, expert=acme.annotator, text="Two")
    judge(acme, conversation, preference="Tie")
    with (
        scope(organization=acme.organization),
        pytest.raises(services.ChatRefused, match="1 turns"),
    ):
        services.send_turn(conversation_id=conversation.pk, expert=acme.annotator, text="Two")


def branched(tenant, project, endpoint):
    """A conversation of two judged turns that went back to the first turn's other reply and
    asked "Another way" from there: (conversation, the first reply chosen, the other, the
    last turn)."""
    conversation = start(tenant, project, endpoint)
    say(tenant, conversation, "Hello")
    judge(tenant, conversation, preference="A is much better")
    chosen = current(conversation)
    say(tenant, conversation, "Go on")
    judge(tenant, conversation, preference="Tie")
    with scopes_disabled():
        other = chosen.parent.children.exclude(pk=chosen.pk).get()
    with scope(organization=tenant.organization):
        services.branch(
            conversation_id=conversation.pk, expert=tenant.annotator, message_id=other.pk
        )
    return conversation, chosen, other, say(tenant, conversation, "Another way")


def test_branching_from_another_reply_grows_a_second_path(acme, chat):
    project, endpoint = chat
    conversation, chosen, other, turn = branched(acme, project, endpoint)
    assert turn.status == "succeeded"
    with scopes_disabled():
        users = Message.objects.filter(conversation=conversation, role="user")
        assert sorted(m.parent_id for m in users if m.depth == 3) == sorted([chosen.pk, other.pk])
        prompt = Item.objects.get(pk=turn.item_id).prompt
    assert prompt.messages[2]["content"] == other.text


def test_a_server_that_stops_mid_reply_fails_the_turn_in_words_and_retry_works(acme, chat, fake):
    project, endpoint = chat
    conversation = start(acme, project, endpoint)
    fake.break_after = 3
    turn = say(acme, conversation, "Hello")
    assert turn.status == "failed"
    assert turn.error.startswith("The LLM server stopped in the middle of a reply.")
    assert "Retry" in turn.error
    assert streaming.read(turn.pk)[-1]["kind"] == "end"
    with scopes_disabled():
        assert not Item.objects.filter(project=project).exists()  # nothing half-written
    fake.break_after = None
    with scope(organization=acme.organization):
        again = services.retry_turn(conversation_id=conversation.pk, expert=acme.annotator)
        again = services.run_turn(again.pk)
    assert again.status == "succeeded"
    # a retry asks with other seeds (the same seed would repeat the failed replies)
    assert {v["seed"] for v in again.variants} == {1001, 1002}


def test_a_server_that_is_down_says_so_and_never_shows_its_body(acme, chat, fake):
    project, endpoint = chat
    conversation = start(acme, project, endpoint)
    fake.down = True
    turn = say(acme, conversation, "Hello")
    assert turn.status == "failed"
    assert "LLM server" in turn.error and "Retry" in turn.error


class GarbledStream(LocalServer):
    """A streaming server whose events go wrong after one good piece: ``line`` is sent as
    the second event (broken JSON, an error chunk quoting an internal body)."""

    def __init__(self, line: bytes):
        class Handler(QuietHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                good = {
                    "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]
                }
                self.wfile.write(f"data: {json.dumps(good)}\n\n".encode() + line + b"\n\n")

        self.serve(Handler)


def first_turn_against(tenant, server: LocalServer) -> ChatTurn:
    """A chat project on ``server`` and its first turn, run; the server is closed after."""
    try:
        project, endpoint = make_chat(tenant, server.url)
        return say(tenant, start(tenant, project, endpoint), "Hello")
    finally:
        server.close()


@pytest.mark.parametrize(
    ("line", "said"),
    [
        (b'data: {"choices": [ {"delta": ', "The LLM server sent a malformed reply."),
        (b'data: ["a list"]', "The LLM server sent a malformed reply."),
        (
            b'data: {"error": {"message": "' + INTERNAL_BODY.encode() + b'"}}',
            "The LLM server answered with a server error in the middle of a reply.",
        ),
    ],
)
def test_a_garbled_stream_fails_the_turn_in_words_of_ours(acme, line, said):
    turn = first_turn_against(acme, GarbledStream(line))
    assert turn.status == "failed"
    assert turn.error.startswith(said) and "Retry" in turn.error
    assert "hunter2" not in turn.error


class SplitStream(LocalServer):
    """A streaming server that cuts its events anywhere: mid-line, between the CR and LF of
    a line end, inside a character's UTF-8 bytes, one packet at a time."""

    PIECES = ["Grüße ", "from ", "Zürich — ", "日本語 ", "and back"]

    def __init__(self):
        served = itertools.count(1)

        class Handler(QuietHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                pieces = [*SplitStream.PIECES, "!" * next(served)]  # each reply its own
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                events = [
                    {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    for piece in pieces
                ]
                events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                body = (
                    b"".join(
                        b"data: " + json.dumps(e, ensure_ascii=False).encode() + b"\r\n\r\n"
                        for e in events
                    )
                    + b"data: [DONE]\r\n\r\n"
                )
                for start in range(0, len(body), 7):  # 7 bytes a packet: splits everything
                    self.wfile.write(body[start : start + 7])
                    self.wfile.flush()

        self.serve(Handler)


def test_a_stream_cut_anywhere_arrives_whole(acme):
    turn = first_turn_against(acme, SplitStream())
    assert turn.status == "succeeded", turn.error
    with scopes_disabled():
        texts = {m.text for m in Message.objects.filter(role="assistant")}
    assert texts == {"".join(SplitStream.PIECES) + "!", "".join(SplitStream.PIECES) + "!!"}


class Socket:
    """What a streaming response's reads return: each read waits for the next packet if
    none came since the last read, then gives every packet that came meanwhile. Packets
    (one event each) come every ``gap`` seconds, as a model server sends its tokens."""

    def __init__(self, packets: list[bytes], gap: float):
        self.start = time.monotonic()
        self.due = [(self.start + i * gap, packet) for i, packet in enumerate(packets)]
        self.reads = 0

    def __iter__(self):
        while self.due:
            if self.due[0][0] > time.monotonic():
                time.sleep(self.due[0][0] - time.monotonic())
            now = time.monotonic()
            came = [packet for at, packet in self.due if at <= now]
            self.due = self.due[len(came) :]
            self.reads += 1
            yield b"".join(came)


def test_after_the_first_words_the_stream_is_read_once_per_batch_not_per_token():
    tokens = [f"t{n} " for n in range(40)]
    packets = [
        b"data: " + json.dumps({"choices": [{"delta": {"content": t}}]}).encode() + b"\n\n"
        for t in tokens
    ]
    socket = Socket(packets, gap=0.01)  # 40 tokens a second for 0.4 s
    got, first_at = [], None
    paced = streaming._paced_lines(iter(socket), streaming.FLUSH_SECONDS, lambda: bool(got))
    for line in paced:
        if line:
            got.append(json.loads(line[5:])["choices"][0]["delta"]["content"])
            first_at = first_at or time.monotonic()
    assert got == tokens  # every token, in order
    assert first_at - socket.start < 0.05  # the first words are not held back
    # Read about once per FLUSH_SECONDS (0.4 s: 4-6 reads), not once per token (40).
    assert socket.reads <= 8, socket.reads


def test_a_server_error_before_the_stream_names_its_status_not_its_body(acme):
    turn = first_turn_against(acme, FakeLLM(mode="500"))
    assert turn.status == "failed"
    assert "HTTP 500" in turn.error and "hunter2" not in turn.error


def test_stopping_a_turn_ends_it_without_an_item(acme, chat, fake):
    project, endpoint = chat
    conversation = start(acme, project, endpoint)
    with scope(organization=acme.organization):
        turn = services.send_turn(conversation_id=conversation.pk, expert=acme.annotator, text="Hi")
        services.stop_turn(turn=turn, expert=acme.annotator)
        turn.refresh_from_db()
    assert turn.status == "failed" and turn.error == services.STOPPED
    assert fake.requests == 0


def test_the_organizations_share_of_an_endpoint_limits_replies_in_flight(acme, fake):
    project, endpoint = make_chat(acme, fake.url, replies=3, concurrent=1)
    fake.tokens, fake.interval = 5, 0.02
    conversation = start(acme, project, endpoint)
    turn = say(acme, conversation, "Hello")
    assert turn.status == "succeeded" and fake.requests == 3
    assert fake.peak == 1
    with scopes_disabled():
        assert Item.objects.get(pk=turn.item_id).mode == "ranking"


def test_a_seed_prompt_starts_the_conversation_and_is_answered(acme, chat):
    project, endpoint = chat
    with scopes_disabled():
        seed = Prompt.objects.create(
            organization=acme.organization,
            project=project,
            external_id="s1",
            text="Plan a trip.",
            messages=[{"role": "user", "content": "Plan a trip."}],
            content_hash="x",
        )
    conversation = start(acme, project, endpoint, seed_prompt=seed)
    with scopes_disabled():
        turn = ChatTurn.objects.get(conversation=conversation)
    assert turn.user_message.text == "Plan a trip."


def test_trl_conversational_export_has_the_chosen_path_as_prefix(acme, chat, tmp_path):
    from tests.exports.test_formats import export, load

    project, endpoint = chat
    conversation = start(acme, project, endpoint)
    say(acme, conversation, "Hello")
    judge(acme, conversation, preference="A is much better")
    first = current(conversation)
    say(acme, conversation, "More")
    judge(acme, conversation, preference="B is much better")
    export(project, "trl-conversational", tmp_path / "conv")
    rows = [
        json.loads(line) for line in (tmp_path / "conv" / "train.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 2
    second = next(r for r in rows if len(r["prompt"]) == 4)
    assert second["prompt"][2] == {"role": "assistant", "content": first.text}
    assert second["prompt"][-1] == {"role": "user", "content": "More"}
    from trl.data_utils import is_conversational

    dataset = load("json", tmp_path / "conv" / "train.jsonl", tmp_path)
    assert all(is_conversational(row) for row in dataset)


def test_the_tree_download_names_parents_ranks_and_labels(acme, chat, as_user):
    project, endpoint = chat
    conversation = start(acme, project, endpoint)
    say(acme, conversation, "Hello")
    judge(acme, conversation, preference="A is much better", fix="Fixed reply.")
    response = as_user(acme.lead).get(reverse("chat:tree_export", args=[project.pk]))
    assert response.status_code == 200
    lines = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    by_id = {line["message_id"]: line for line in lines}
    assert [line["role"] for line in lines] == [
        "system",
        "user",
        "assistant",
        "assistant",
        "assistant",
    ]
    replies = [line for line in lines if line["role"] == "assistant"]
    assert all(by_id[r["parent_id"]]["role"] == "user" for r in replies)
    fixed = next(r for r in replies if r["text"] == "Fixed reply.")
    assert fixed["rank"] == 0 and fixed["labels"]["corrected"] and fixed["labels"]["strength"] == 3
    assert sorted(r["rank"] for r in replies) == [0, 1, 2]


# --- the pages -------------------------------------------------------------------------------


def test_the_events_door_gives_tokens_after_the_cursor_to_the_expert_only(acme, chat, as_user):
    project, endpoint = chat
    conversation = start(acme, project, endpoint)
    turn = say(acme, conversation, "Hello")
    url = reverse("chat:events", args=[project.pk, turn.pk])
    data = as_user(acme.annotator).get(url).json()
    assert data["finished"] and data["events"][-1]["kind"] == "end"
    middle = data["events"][1]["id"]
    later = as_user(acme.annotator).get(url, {"after": middle}).json()["events"]
    assert later == data["events"][2:]
    assert as_user(acme.lead).get(url).status_code == 404  # not the lead's conversation


def test_a_poll_reads_the_login_and_one_row_of_the_turn(acme, chat, as_user):
    """A poll without the page's key (or when the stream cannot answer, below) reads the
    session, the user and their memberships (as every page does), then the turn's row,
    nothing more, whether the turn waits or is written."""
    project, endpoint = chat
    conversation = start(acme, project, endpoint)
    with scope(organization=acme.organization):
        turn = services.send_turn(conversation_id=conversation.pk, expert=acme.annotator, text="Hi")
    url = reverse("chat:events", args=[project.pk, turn.pk])
    expert = as_user(acme.annotator)

    def poll() -> tuple[dict, list[str]]:
        with CaptureQueriesContext(connection) as queries:
            data = expert.get(url).json()
        # the first table each query reads, quoted by the ORM or not (tasks.sqlrows)
        return data, [re.search(r'FROM "?(\w+)', query["sql"]).group(1) for query in queries]

    read = ["django_session", "auth_user", "tasks_membership", "chat_chatturn"]
    assert poll() == ({"events": [], "status": "queued", "finished": False, "message": ""}, read)
    with scope(organization=acme.organization):
        services.run_turn(turn.pk)
    data, tables = poll()
    assert data["finished"] and data["events"][-1]["kind"] == "end" and tables == read


def page_stream(client, project, conversation) -> tuple[str, str]:
    """The events address and the key the conversation page gives its script."""
    page = client.get(reverse("chat:conversation", args=[project.pk, conversation.pk]))
    found = re.search(r'data-events-url="([^"]+)" data-events-key="([^"]+)"', page.text)
    return found.group(1), found.group(2)


def queued_turn(tenant, project, endpoint) -> tuple[Conversation, ChatTurn]:
    conversation = start(tenant, project, endpoint)
    with scope(organization=tenant.organization):
        turn = services.send_turn(
            conversation_id=conversation.pk, expert=tenant.annotator, text="Hi"
        )
    return conversation, turn


def test_with_the_pages_key_a_poll_reads_no_table_while_the_turn_waits_or_is_written(
    acme, chat, as_user
):
    """50 experts reading their replies poll about 70 times a second: with the key the page
    gave, the turn's stream answers alone, before a worker takes the turn, while it writes
    and at the end, the same answers the whole way gives."""
    project, endpoint = chat
    conversation, turn = queued_turn(acme, project, endpoint)
    expert = as_user(acme.annotator)
    url, key = page_stream(expert, project, conversation)
    with CaptureQueriesContext(connection) as queries:
        waiting = expert.get(url, {"after": "0", "key": key})
        channel = streaming.Channel(turn.pk)  # a worker takes the turn and writes
        channel.reset()
        channel.token(0, "Hel")
        writing = expert.get(url, {"after": "0", "key": key}).json()
        cursor = writing["events"][-1]["id"]
        nothing_new = expert.get(url, {"after": cursor, "key": key}).json()
    assert queries.captured_queries == []
    assert waiting.json() == {"events": [], "status": "queued", "finished": False, "message": ""}
    assert waiting["Cache-Control"] == "no-store" and waiting["X-Content-Type-Options"] == "nosniff"
    assert [e["kind"] for e in writing["events"]] == ["start", "token"]
    assert writing["events"][-1]["text"] == "Hel"
    assert (writing["status"], writing["finished"]) == ("running", False)
    assert nothing_new["events"] == [] and not nothing_new["finished"]

    with scope(organization=acme.organization):
        services.run_turn(turn.pk)
    with CaptureQueriesContext(connection) as queries:
        done = expert.get(url, {"after": "0", "key": key}).json()
    assert queries.captured_queries == []
    whole_way = expert.get(url, {"after": "0"}).json()
    assert done == whole_way and done["finished"] and done["events"][-1]["kind"] == "end"


def test_the_key_opens_nothing_the_whole_way_would_not(acme, chat, as_user, monkeypatch):
    """The key is bound to the project, the turn and the session that loaded the page, and
    expires: any other use takes the whole way, with its login and ownership checks."""
    project, endpoint = chat
    conversation, turn = queued_turn(acme, project, endpoint)
    expert = as_user(acme.annotator)
    url, key = page_stream(expert, project, conversation)
    with CaptureQueriesContext(connection) as queries:
        assert expert.get(url, {"key": key}).status_code == 200
    assert not queries.captured_queries  # the key is good: what follows is not for its lack
    assert as_user(acme.lead).get(url, {"key": key}).status_code == 404  # another session
    assert Client().get(url, {"key": key}).status_code == 302  # no session: the log-in page
    assert expert.get(url, {"key": key}, HTTP_HOST="evil.example").status_code == 400
    other_turn = reverse("chat:events", args=[project.pk, turn.pk + 1])
    assert expert.get(other_turn, {"key": key}).status_code == 404
    for bad in (key[:-1] + ("0" if key[-1] != "0" else "1"), "9999999999." + key.split(".")[1]):
        with CaptureQueriesContext(connection) as queries:
            assert expert.get(url, {"key": bad}).json()["status"] == "queued"
        assert queries.captured_queries, "a forged key took the short way"
    monkeypatch.setattr(streaming, "EVENTS_KEY_SECONDS", -1)
    expired = streaming.events_key(project.pk, turn.pk, expert.session.session_key)
    with CaptureQueriesContext(connection) as queries:
        assert expert.get(url, {"key": expired}).status_code == 200
    assert queries.captured_queries, "an expired key took the short way"


def test_a_silent_stream_or_redis_away_leaves_the_answer_to_the_turns_row(
    acme, chat, as_user, monkeypatch
):
    """A worker that went silent (its turn failed by the sweeper after its attempts) writes
    no end: after STALE_SECONDS without news the turn's row answers. With Redis away, the
    row answers too."""
    project, endpoint = chat
    conversation, turn = queued_turn(acme, project, endpoint)
    expert = as_user(acme.annotator)
    url, key = page_stream(expert, project, conversation)
    streaming.Channel(turn.pk).reset()
    with scopes_disabled():  # as the sweeper fails a turn whose workers died
        ChatTurn.objects.filter(pk=turn.pk).update(status="failed", error="The worker was lost.")
    started = expert.get(url, {"key": key}).json()
    assert [e["kind"] for e in started["events"]] == ["start"] and not started["finished"]
    cursor = {"after": started["events"][-1]["id"], "key": key}
    assert not expert.get(url, cursor).json()["finished"]  # nothing new, within STALE_SECONDS
    monkeypatch.setattr(streaming, "STALE_SECONDS", 0.0)
    answer = expert.get(url, cursor).json()
    assert answer["finished"] and answer["message"] == "The worker was lost."

    conversation, turn = queued_turn(acme, project, endpoint)
    url, key = page_stream(expert, project, conversation)
    monkeypatch.setattr(streaming, "_redis", redis.Redis(port=free_port(), socket_timeout=1))
    answer = expert.get(url, {"key": key})
    assert answer.status_code == 200 and answer.json()["status"] == "queued"


def test_stopping_a_queued_turn_ends_its_stream(acme, chat, as_user):
    project, endpoint = chat
    conversation, turn = queued_turn(acme, project, endpoint)
    expert = as_user(acme.annotator)
    url, key = page_stream(expert, project, conversation)
    stop = expert.post(reverse("chat:stop", args=[project.pk, turn.pk]))
    assert stop.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        answer = expert.get(url, {"key": key}).json()
    assert queries.captured_queries == []
    assert answer["finished"] and answer["message"] == services.STOPPED


def test_the_conversation_page_escapes_what_was_said(acme, chat, as_user):
    project, endpoint = chat
    conversation = start(acme, project, endpoint)
    say(acme, conversation, "<script>alert(1)</script>")
    judge(acme, conversation, preference="Tie")
    page = as_user(acme.annotator).get(
        reverse("chat:conversation", args=[project.pk, conversation.pk])
    )
    assert page.status_code == 200
    assert b"<script>alert(1)</script>" not in page.content
    assert b"&lt;script&gt;" in page.content


def test_the_judge_door_answers_the_next_state_as_a_fragment(acme, chat, as_user):
    project, endpoint = chat
    conversation = start(acme, project, endpoint)
    say(acme, conversation, "Hello")
    client = as_user(acme.annotator)
    url = reverse("chat:judge", args=[project.pk, conversation.pk])
    bad = client.post(url, {}, HTTP_X_CHOSEN_FRAGMENT="1")
    assert bad.status_code == 400 and "judge-form" in bad.json()["html"]
    good = client.post(url, {"preference": "A is much better"}, HTTP_X_CHOSEN_FRAGMENT="1")
    assert good.status_code == 200 and 'id="turn-form"' in good.json()["html"]
    with scopes_disabled():
        assert Judgment.objects.filter(annotator=acme.annotator).count() == 1


def test_lead_pages_are_for_leads_and_show_every_tree(acme, chat, as_user):
    project, endpoint = chat
    conversation = start(acme, project, endpoint)
    say(acme, conversation, "Hello <i>there</i>")
    for name in ("chat:conversations", "chat:settings", "chat:tree_export"):
        assert as_user(acme.annotator).get(reverse(name, args=[project.pk])).status_code == 403
    page = as_user(acme.lead).get(reverse("chat:conversations", args=[project.pk]))
    assert page.status_code == 200
    assert b"Hello &lt;i&gt;there&lt;/i&gt;" in page.content
    assert page.content.count(b'class="tree-node role-assistant') == 2


def test_another_organizations_chat_is_not_found(acme, globex, chat, as_user):
    project, endpoint = chat
    conversation = start(acme, project, endpoint)
    stranger = as_user(globex.lead)
    for name, args in [
        ("chat:home", [project.pk]),
        ("chat:conversation", [project.pk, conversation.pk]),
        ("chat:conversations", [project.pk]),
        ("chat:settings", [project.pk]),
    ]:
        assert stranger.get(reverse(name, args=args)).status_code == 404


def test_the_settings_form_makes_a_project_a_chat_project(acme, fake, as_user):
    endpoint = LLMEndpoint.objects.create(
        name="fake", base_url=fake.url, model="fake-model", all_organizations=True
    )
    response = as_user(acme.lead).post(
        reverse("chat:settings", args=[acme.project.pk]),
        {
            "endpoints": [endpoint.pk],
            "recipes": ["Brief / thorough / flawed"],
            "system_prompt": "Be kind.",
            "replies_per_turn": 3,
            "max_turns": 5,
            "concurrent_replies": 2,
        },
    )
    assert response.status_code == 302
    with scopes_disabled():
        project = Project.objects.get(pk=acme.project.pk)
        assert project.mode == "chat" and project.chat_settings.judging_mode == "ranking"
    too_many = as_user(acme.lead).post(
        reverse("chat:settings", args=[acme.project.pk]),
        {
            "endpoints": [endpoint.pk],
            "recipes": ["Brief / thorough / flawed"],
            "replies_per_turn": 5,
            "max_turns": 5,
            "concurrent_replies": 2,
        },
    )
    assert too_many.status_code == 400


@pytest.mark.parametrize("replies", [2, 4])
def test_the_lead_can_still_edit_a_chat_project_in_the_admin(acme, fake, as_user, replies):
    """A chat project's questions are checked in its judging mode (a pair with labels, or a
    ranking), so saving it elsewhere (the admin's change form) is not refused for its mode."""
    project, _ = make_chat(acme, fake.url, replies=replies)
    with scope(organization=acme.organization):
        project.guidelines = "Be strict about facts."
        project.full_clean()
        project.save()
    client = as_user(acme.lead)
    page = client.get(f"/admin/tasks/project/{project.pk}/change/")
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update(guidelines="Changed in the admin.", questions=json.dumps(project.questions))
    saved = client.post(f"/admin/tasks/project/{project.pk}/change/", data)
    assert saved.status_code == 302, saved.context["adminform"].form.errors
    project.refresh_from_db()
    assert (project.mode, project.guidelines) == ("chat", "Changed in the admin.")


def test_a_new_turn_never_shows_what_an_earlier_database_left_under_its_id(acme, chat, as_user):
    """After a restore (or a recreated database) turn ids are used again while Redis may
    still hold the streams of the old ones: a new turn starts with none of them."""
    project, endpoint = chat
    conversation = start(acme, project, endpoint)
    with connection.cursor() as cursor:
        cursor.execute("SELECT last_value, is_called FROM chat_chatturn_id_seq")
        last, called = cursor.fetchone()
    next_id = last + 1 if called else last
    stale = streaming.Channel(next_id)
    stale.token(0, "Another organization's reply")
    stale.reply_done(0)
    stale.end("succeeded")
    streaming.stop(next_id)

    with scope(organization=acme.organization):  # the worker has not started yet
        turn = services.send_turn(conversation_id=conversation.pk, expert=acme.annotator, text="Hi")

    assert turn.pk == next_id
    data = as_user(acme.annotator).get(reverse("chat:events", args=[project.pk, turn.pk])).json()
    assert data["events"] == [] and not data["finished"]
    assert streaming.read(turn.pk) == []  # what the page reads once a worker has the turn
    assert not streaming.stop_asked(turn.pk)
