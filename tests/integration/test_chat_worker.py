"""Chat turns on a worker of their own (project.celery, "Two queues"): an expert's turn goes
to the chat queue, which the jobs' worker leaves alone; a worker of threads, as compose's
chat-worker and `make run` start it, streams many experts' turns at once, against the fake
streaming server, and closes each thread's database connection after its turn."""

import threading
import time

import pytest
from django.db import connection
from django.urls import reverse
from django_scopes import scopes_disabled

from chat.models import ChatTurn, Conversation
from project.celery import CHAT_QUEUE, app
from tasks.models import Item, LLMEndpoint
from tests.chat.test_chat import make_chat, start
from tests.fake_llm import FakeStreamingLLM
from tests.tasks.test_throttling import others_connected


@pytest.fixture
def fake():
    server = FakeStreamingLLM(tokens=8, interval=0.005)
    yield server
    server.close()


def waiting_in(queue: str) -> int:
    """Messages the broker holds in ``queue`` (not yet taken by any worker)."""
    with app.connection_for_write() as broker:
        return broker.default_channel.client.llen(queue)


def send(client, project, conversation, text: str) -> ChatTurn:
    url = reverse("chat:send", args=[project.pk, conversation.pk])
    response = client.post(url, {"text": text}, HTTP_X_CHOSEN_FRAGMENT="1")
    assert response.status_code == 200, response.content
    with scopes_disabled():
        return ChatTurn.objects.filter(conversation=conversation).latest("pk")


def follow(client, project, turn: ChatTurn, worker, timeout: float = 60) -> list[dict]:
    """The page's polling of the turn's events until the turn ends; every event seen."""
    url = reverse("chat:events", args=[project.pk, turn.pk])
    seen, after = [], "0"
    deadline = time.monotonic() + timeout
    while True:
        data = client.get(url, {"after": after}).json()
        seen += data["events"]
        after = seen[-1]["id"] if seen else after
        if any(event["kind"] == "end" for event in seen):
            return seen
        assert time.monotonic() < deadline, (data, worker.output()[-3000:])
        time.sleep(0.1)


def test_a_turn_waits_for_the_chat_worker_and_its_threads_stream_the_replies(
    start_worker, acme, fake, as_user
):
    project, endpoint = make_chat(acme, fake.url)
    conversation = start(acme, project, endpoint)
    expert = as_user(acme.annotator)
    jobs = start_worker(queues="celery")

    turn = send(expert, project, conversation, "What is tea?")
    time.sleep(2)  # long enough for the jobs' worker to have taken it, were it its job
    assert waiting_in(CHAT_QUEUE) == 1, jobs.output()[-3000:]
    with scopes_disabled():
        assert ChatTurn.objects.get(pk=turn.pk).status == "queued"

    chat = start_worker(pool="threads", queues="chat", concurrency=4)
    events = follow(expert, project, turn, chat)
    assert events[-1] == {**events[-1], "kind": "end", "status": "succeeded"}
    tokens = [event for event in events if event["kind"] == "token"]
    assert {event["reply"] for event in tokens} == {0, 1}
    assert waiting_in(CHAT_QUEUE) == 0
    with scopes_disabled():
        turn.refresh_from_db()
        assert turn.status == "succeeded" and turn.attempts == 1
        item = Item.objects.get(pk=turn.item_id)
        assert item.candidates.count() == 2
        assert Conversation.objects.get(pk=conversation.pk).current.item_id == item.pk
    page = expert.get(reverse("chat:conversation", args=[project.pk, conversation.pk]))
    assert b'id="judge-form"' in page.content


class LongTransactions:
    """Samples, every 20 ms, the other connections to the test database that have been in
    one transaction for more than half a second while idle (waiting on their program)."""

    def __init__(self):
        self.seen, self.queries, self._stop = 0, [], threading.Event()

    def _sample(self):
        try:
            while not self._stop.wait(0.02):
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT query FROM pg_stat_activity WHERE datname = current_database()"
                        " AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%%'"
                        " AND clock_timestamp() - xact_start > interval '500 ms'"
                    )
                    found = [row[0] for row in cursor.fetchall()]
                self.seen += len(found)
                self.queries += found[:3]
        finally:
            connection.close()

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def test_the_thread_worker_writes_many_turns_at_once_and_keeps_no_connection(
    start_worker, acme, as_user
):
    # Each reply takes about a second: eight turns one after the other would take 8 s.
    fake = FakeStreamingLLM(tokens=10, interval=0.1)
    try:
        project, endpoint = make_chat(acme, fake.url, concurrent=16)
        LLMEndpoint.objects.filter(pk=endpoint.pk).update(max_concurrent_requests=16)
        expert = as_user(acme.annotator)
        conversations = [start(acme, project, endpoint) for _ in range(8)]
        chat = start_worker(pool="threads", queues="chat", concurrency=8)
        idle = others_connected()

        started = time.monotonic()
        with LongTransactions() as held:
            turns = [send(expert, project, c, f"Question {n}") for n, c in enumerate(conversations)]
            for turn in turns:
                assert follow(expert, project, turn, chat)[-1]["status"] == "succeeded"
        took = time.monotonic() - started
        # The replies streamed for about a second each, and no transaction was held open
        # through them: a turn's rows are written in one short transaction at the end.
        assert held.seen == 0, held.queries

        # Both replies of all eight turns streamed side by side: two prefork processes
        # would have had four at most.
        assert fake.peak > 4 and took < 6, (fake.peak, took)
        with scopes_disabled():
            assert {t.status for t in ChatTurn.objects.filter(pk__in=[t.pk for t in turns])} == {
                "succeeded"
            }
        # Each thread's connection is closed after its turn (Celery's Django fix-up), and
        # the heartbeats' threads close theirs: nothing is left open by eight turns.
        deadline = time.monotonic() + 10
        while others_connected() > idle:
            assert time.monotonic() < deadline, (others_connected(), idle)
            time.sleep(0.2)
    finally:
        fake.close()
