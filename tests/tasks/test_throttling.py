"""API throttling under concurrency (issue 17, item 2): 16 clients in parallel against the
threaded live server get no more than the budget, per token and per logged-in user; with
the throttle's Redis unreachable the API keeps answering and says so in the log.

The budget is per hour in these tests: the sliding window lets a caller in again as the
previous window's weight falls, by ``budget × elapsed / period`` calls, so over an hour a
burst of a few seconds gets exactly the budget wherever the window boundary falls. Each
test's counters go with the cache: tests/conftest.py clears it (the whole Redis db) around
every test."""

import logging
import math
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import pytest
import requests
from django.db import connection

from tasks.api import throttling
from tests.factories import api_token

BUDGET = 20
CLIENTS = 16
CALLS_EACH = 8  # 128 calls against a budget of 20
PROJECTS = "/api/v1/projects/"


@pytest.fixture
def budget(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"token": f"{BUDGET}/hour", "user": f"{BUDGET}/hour"},
    }


@pytest.fixture
def server(transactional_db, live_server, budget):
    """The threaded live server (its requests run in threads of their own, as in a
    multi-threaded or multi-process deployment); the test's rows are committed. A request
    thread closes its database connection just after its reply has gone out: waited for,
    so that neither the flush after the test nor dropping the test database meets one."""
    yield live_server.url
    deadline = time.monotonic() + 10
    while others_connected() and time.monotonic() < deadline:
        time.sleep(0.05)


def others_connected() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


class Reply(NamedTuple):
    status: int
    retry_after: str | None
    message: str | None


def in_parallel(url: str, headers: list[dict]) -> list[list[Reply]]:
    """One client per entry of ``headers``, each in its own thread, all starting together,
    each calling ``url`` CALLS_EACH times over one kept-alive connection; the replies of
    each client. Nothing of a response is kept: its socket would stay open, and with it
    the server thread and that thread's database connection."""
    start = threading.Barrier(len(headers))

    def calls(header):
        replies = []
        with requests.Session() as session:
            session.headers.update(header)
            start.wait()
            for _ in range(CALLS_EACH):
                with session.get(url, timeout=60) as response:
                    refused = response.status_code == 429
                    replies.append(
                        Reply(
                            response.status_code,
                            response.headers.get("Retry-After"),
                            response.json()["errors"][0]["message"] if refused else None,
                        )
                    )
        return replies

    with ThreadPoolExecutor(len(headers)) as pool:
        return list(pool.map(calls, headers))


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def assert_exactly_the_budget(replies: list[Reply]) -> None:
    statuses = [reply.status for reply in replies]
    assert statuses.count(200) == BUDGET, statuses
    assert statuses.count(429) == len(replies) - BUDGET, statuses
    for refused in (reply for reply in replies if reply.status == 429):
        assert int(refused.retry_after) > 0
        assert "Request was throttled" in refused.message


def test_parallel_calls_with_one_token_get_exactly_its_budget(server, acme):
    key = api_token(acme.organization)[1]
    batches = in_parallel(server + PROJECTS, [bearer(key)] * CLIENTS)
    assert_exactly_the_budget(sum(batches, []))


def test_two_tokens_called_in_parallel_each_get_their_own_budget(server, acme):
    first, second = api_token(acme.organization, "a")[1], api_token(acme.organization, "b")[1]
    clients = [bearer(first), bearer(second)] * (CLIENTS // 2)
    batches = in_parallel(server + PROJECTS, clients)
    assert_exactly_the_budget(sum(batches[0::2], []))  # the first token's clients
    assert_exactly_the_budget(sum(batches[1::2], []))


def test_parallel_calls_of_one_logged_in_user_get_exactly_the_user_budget(
    server, acme, as_user, settings
):
    session = as_user(acme.lead).cookies[settings.SESSION_COOKIE_NAME].value
    cookie = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session}"}
    assert_exactly_the_budget(sum(in_parallel(server + PROJECTS, [cookie] * CLIENTS), []))
    # the organization's token is not the lead: a budget of its own
    key = api_token(acme.organization)[1]
    assert requests.get(server + PROJECTS, headers=bearer(key), timeout=60).status_code == 200


@pytest.mark.django_db
def test_the_budget_comes_back_when_retry_after_says(acme, client, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"token": "3/s", "user": "3/s"},
    }
    header = {"HTTP_AUTHORIZATION": f"Bearer {api_token(acme.organization)[1]}"}
    statuses = [client.get(PROJECTS, **header).status_code for _ in range(3)]
    refused = client.get(PROJECTS, **header)
    if statuses != [200, 200, 200]:  # a second boundary fell amid the three: try once more
        time.sleep(1)
        statuses = [client.get(PROJECTS, **header).status_code for _ in range(3)]
        refused = client.get(PROJECTS, **header)
    assert statuses == [200, 200, 200] and refused.status_code == 429
    retry_after = int(refused["Retry-After"])
    assert 1 <= retry_after <= 2
    time.sleep(retry_after)
    assert client.get(PROJECTS, **header).status_code == 200


@pytest.fixture
def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.django_db
def test_api_answers_and_warns_once_when_the_throttle_redis_is_unreachable(
    acme, client, settings, closed_port, monkeypatch, caplog
):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"token": "2/hour", "user": "2/hour"},
    }
    monkeypatch.setattr(throttling, "_last_warning", -math.inf)
    monkeypatch.setattr(throttling, "_paused_until", 0.0)
    monkeypatch.setattr(throttling, "PAUSE_AFTER_FAILURE", 0.0)  # every call tries Redis
    header = {"HTTP_AUTHORIZATION": f"Bearer {api_token(acme.organization)[1]}"}
    real_redis = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    with caplog.at_level(logging.WARNING, logger="tasks.api.throttling"):
        statuses = [client.get(PROJECTS, **header).status_code for _ in range(5)]
    assert statuses == [200] * 5  # over the budget of 2, answered: the throttle failed open
    warnings = [r for r in caplog.records if r.name == "tasks.api.throttling"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "Redis did not answer" in warnings[0].getMessage()
    settings.REDIS_URL = real_redis  # back: counted again
    statuses = [client.get(PROJECTS, **header).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_with_redis_down_the_throttle_answers_at_once_and_waits_before_retrying(
    settings, closed_port, monkeypatch
):
    """Fail open fast: a closed port refuses at once, and after a failure the throttle
    leaves Redis alone for PAUSE_AFTER_FAILURE, so an outage adds no timeout per call."""
    monkeypatch.setattr(throttling, "_paused_until", 0.0)
    monkeypatch.setattr(throttling, "_last_warning", time.monotonic())  # not asserted here
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    tried = []
    script = throttling._script

    def counting_script(url):
        tried.append(url)
        return script(url)

    monkeypatch.setattr(throttling, "_script", counting_script)

    class Request:
        auth = type("Token", (), {"pk": 1})()

    started = time.monotonic()
    assert all(throttling.CallerRateThrottle().allow_request(Request, None) for _ in range(50))
    assert time.monotonic() - started < 1
    assert len(tried) == 1
