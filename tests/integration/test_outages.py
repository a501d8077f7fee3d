"""Annotators barely notice Redis and PostgreSQL outages (issue 18's drills, short versions).

Chosen runs as in production: gunicorn with DJANGO_ENV=production and collected static
files, and an annotator judges in Chromium with the keyboard. The faults are real: a Redis
or PostgreSQL server of the test's own is stopped and started again (the machine's shared
servers are never touched), a gunicorn worker is SIGKILLed in the middle of a submit, an
answer is lost on its way back to the browser. Each drill prints what the annotator saw.
"""

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
import redis
from django.db import connection
from django.test import Client
from django.urls import reverse
from django_scopes import scopes_disabled
from playwright.sync_api import expect

from annotation.models import Judgment
from project.embedded import _postgres_system_user
from tasks.outages import DATABASE_RESTARTING
from tests.annotation.test_allocator import project_with_items
from tests.conftest import log_in_through_the_form, open_page
from tests.factories import PASSWORD
from tests.tasks.test_accounts import log_in

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
NO_ANSWER = "The server did not answer; your answers are safe, retrying…"
SAVED = "Saved."
# A shared 2-core machine: waits are generous, and every wait polls for its condition.
SLOW = 60_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, seconds: float, what: str, page=None) -> None:
    """Poll ``condition``. With a ``page``, its browser goes on meanwhile: every request
    passes a route handler that runs in this thread (tests.conftest.open_page), so a plain
    sleep here would hold the page's requests back."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        if page is None:
            time.sleep(0.1)
        else:
            page.wait_for_timeout(100)


def private_folder() -> Path:
    """A short path (Unix socket paths are limited to 107 bytes) outside pytest's own
    temporary folders, which other users (PostgreSQL's) cannot enter."""
    return Path(tempfile.mkdtemp(prefix="chosen-drill-"))


# --- the servers the drills stop and start -----------------------------------------------


class PrivateRedis:
    """redis-server on a Unix socket, persisting as docker compose's does (appendonly)."""

    def __init__(self, folder: Path):
        self.folder, self.socket = folder, folder / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.process = None
        self.start()

    def start(self, wait: bool = True) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--unixsocketperm",
                "700",
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--logfile",
                str(self.folder / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        if wait:
            wait_until(self.answers, 30, "the private Redis to start")

    def answers(self) -> bool:
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """SIGTERM, as `docker compose stop` sends: Redis saves and exits."""
        self.process.terminate()
        self.process.wait(timeout=30)


class PrivatePostgres:
    """A PostgreSQL 15 cluster of its own, on a Unix socket only. As root, the server runs
    as the system user `make run` uses (PostgreSQL refuses to run as root)."""

    def __init__(self, folder: Path):
        self.folder, self.data = folder, folder / "data"
        self.as_user = _postgres_system_user() if os.geteuid() == 0 else {}
        if self.as_user:
            os.chown(folder, self.as_user["user"], self.as_user["group"])
        self.log = (folder / "postgres.log").open("ab")
        subprocess.run(
            [POSTGRES_BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-N"],
            cwd=folder,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            check=True,
            **self.as_user,
        )
        self.process = None
        self.start()

    def start(self, wait: bool = True) -> None:
        self.process = subprocess.Popen(
            [
                POSTGRES_BIN / "postgres",
                "-D",
                self.data,
                "-k",
                self.folder,
                "-c",
                "listen_addresses=",
                "-c",
                "fsync=off",
            ],
            cwd=self.folder,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            **self.as_user,
        )
        if wait:
            wait_until(self.answers, 60, "the private PostgreSQL to start")

    def answers(self) -> bool:
        try:
            psycopg.connect(self.url("postgres"), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self) -> None:
        """SIGINT: PostgreSQL's fast shutdown (`pg_ctl stop -m fast`), which ends every
        session, as a restart by an operator or an orchestrator does."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)

    def close(self) -> None:
        with suppress(ProcessLookupError, subprocess.TimeoutExpired):
            if self.process.poll() is None:
                self.stop()
        self.log.close()

    def url(self, database: str) -> str:
        return f"postgres://postgres@{quote(str(self.folder), safe='')}/{database}"

    def copy_of(self, source_url: str, database: str) -> str:
        """A copy of a database of the machine's PostgreSQL (its tables and rows)."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        dump = subprocess.run(
            [POSTGRES_BIN / "pg_dump", "--no-owner", "--no-privileges", "--dbname", source_url],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(
            [POSTGRES_BIN / "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", self.url(database)],
            input=dump,
            capture_output=True,
            check=True,
        )
        return self.url(database)


def database_of_the_tests() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


# --- Chosen as in production --------------------------------------------------------------


@pytest.fixture(scope="session")
def static_root():
    """The static files collected as the image collects them (manifest, compression)."""
    folder = Path(tempfile.mkdtemp(prefix="chosen-static-"))
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_ENV": "production",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
            "DJANGO_STATIC_ROOT": str(folder),
        },
        check=True,
    )
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=False)


class Gunicorn:
    """gunicorn with the production settings, as the image runs it (two workers here)."""

    def __init__(self, log_path: Path, env: dict):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log = log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "project.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "2",
                "--timeout",
                "120",
                "--access-logfile",
                "-",
                "--no-control-socket",  # gunicorn's default path is one per user, shared
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self.serves, 60, f"gunicorn to serve:\n{self.output()}")

    def serves(self) -> bool:
        assert self.process.poll() is None, self.output()
        with suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=2):
            return len(self.workers()) == 2
        return False

    def workers(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return sorted(int(pid) for pid in path.read_text().split())

    def worker_connected_from(self, port: int) -> int:
        """The worker whose TCP connection has this local port (its database session's)."""
        inodes = {}
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                inodes[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
        for pid in self.workers():
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:[") and inodes.get(target[8:-1]) == port:
                        return pid
        raise AssertionError(f"no worker has a connection from port {port}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.log.close()


def production(*, static_root: Path, media_root: Path, database_url: str, redis_url: str):
    """The environment docker compose gives the web service, on these servers."""
    return {
        **os.environ,
        "DJANGO_ENV": "production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "false",  # plain HTTP on 127.0.0.1
        "DJANGO_SECURE_COOKIES": "false",
        "DJANGO_STATIC_ROOT": str(static_root),
        "DJANGO_MEDIA_ROOT": str(media_root),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "text",
        "PYTHONUNBUFFERED": "1",  # as in the image: each log line is in the file at once
    }


@pytest.fixture(scope="module")
def private_redis():
    folder = private_folder()
    server = PrivateRedis(folder)
    yield server
    if server.process.poll() is None:
        server.stop()
    subprocess.run(["rm", "-rf", str(folder)], check=False)


@pytest.fixture(scope="module")
def chosen(django_db_setup, static_root, private_redis, tmp_path_factory):
    """Chosen on the tests' database and the private Redis, for the drills that stop that
    Redis or kill a worker (a worker takes seconds of CPU to start: one server for both)."""
    folder = tmp_path_factory.mktemp("chosen")
    server = Gunicorn(
        folder / "gunicorn.log",
        production(
            static_root=static_root,
            media_root=folder / "media",
            database_url=database_of_the_tests(),
            redis_url=private_redis.url,
        ),
    )
    yield server
    server.stop()


@pytest.fixture
def redis_back(private_redis):
    """The private Redis runs again after a test, whatever the test did to it."""
    yield private_redis
    if private_redis.process.poll() is not None:
        private_redis.start()


@pytest.fixture
def serve(static_root, settings, tmp_path):
    """Start gunicorn on the given database and Redis; stopped at the end."""
    servers = []

    def start(*, database_url: str, redis_url: str) -> Gunicorn:
        environment = production(
            static_root=static_root,
            media_root=settings.MEDIA_ROOT,
            database_url=database_url,
            redis_url=redis_url,
        )
        servers.append(Gunicorn(tmp_path / f"gunicorn-{len(servers)}.log", environment))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def private_postgres():
    folder = private_folder()
    server = PrivatePostgres(folder)
    yield server
    server.close()
    subprocess.run(["rm", "-rf", str(folder)], check=False)


# --- what the annotator sees ----------------------------------------------------------------


class Annotator:
    """An annotator in Chromium: what every response of the server was, and every text the
    message line above the item showed, with the page's clock (ms)."""

    FLASH_LOG = """() => {
        window.flashLog = [];
        const note = () => {
            const flash = document.getElementById("flash");
            const text = flash ? flash.textContent : "";
            const last = window.flashLog[window.flashLog.length - 1];
            if (!last || last[1] !== text) window.flashLog.push([performance.now(), text]);
        };
        new MutationObserver(note).observe(document.getElementById("workspace"),
            {childList: true, subtree: true, characterData: true});
        note();
    }"""

    def __init__(self, browser, base: str):
        self.context, self.page = open_page(browser, base)
        self.responses: list[tuple[float, int, str]] = []  # (epoch ms answered, status, url)
        self.unanswered: list[tuple[float, str]] = []  # (epoch ms, url)
        self.page.on("response", self._seen)
        self.page.on("requestfailed", self._unanswered)

    def _seen(self, response) -> None:
        timing = response.request.timing
        answered = timing["startTime"] + max(timing["responseStart"], 0)
        self.responses.append((answered, response.status, response.url))

    def _unanswered(self, request) -> None:
        self.unanswered.append((request.timing["startTime"], request.url))

    def start(self, email: str, project_id: int) -> None:
        log_in_through_the_form(self.page, email, PASSWORD)
        self.page.goto(f"/projects/{project_id}/annotate/")
        self.watch()

    def watch(self) -> None:
        self.page.evaluate(self.FLASH_LOG)

    def on_screen(self) -> int:
        return int(self.page.locator("#judge-form").get_attribute("data-assignment"))

    def press_a_and_enter(self) -> int:
        judged = self.on_screen()
        self.page.keyboard.press("a")
        self.page.keyboard.press("Enter")
        return judged

    def sees_next(self, judged: int, timeout: float = SLOW) -> None:
        expect(self.page.locator("#judge-form")).not_to_have_attribute(
            "data-assignment", str(judged), timeout=timeout
        )
        expect(self.page.locator("#flash")).to_have_text(SAVED)

    def judge(self) -> int:
        judged = self.press_a_and_enter()
        self.sees_next(judged)
        return judged

    def says(self, text: str, timeout: float = SLOW) -> None:
        expect(self.page.locator("#flash")).to_have_text(text, timeout=timeout)

    def shown_for(self, text: str) -> float:
        """Seconds the message line showed ``text`` before it changed (the first time)."""
        log = self.page.evaluate("window.flashLog")
        start = next(i for i, (_, shown) in enumerate(log) if shown == text)
        end = next(i for i in range(start, len(log)) if log[i][1] != text)
        return (log[end][0] - log[start][0]) / 1000

    def errors(self, within: tuple[float, float] | None = None, outside: bool = False) -> list:
        """5xx answers (with the epoch-ms window they fell in, or outside it)."""
        found = [r for r in self.responses if r[1] >= 500]
        if within is None:
            return found
        inside = [r for r in found if within[0] <= r[0] <= within[1]]
        return [r for r in found if r not in inside] if outside else inside

    def script_problems(self) -> list[str]:
        """What the page logged that is not the browser noting a failed or 5xx request
        (those are the drill's faults): script errors, CSP violations, foreign requests."""
        expected = re.compile(r"Failed to load resource|net::ERR_")
        return [p for p in self.page.problems if not expected.search(p)]


@pytest.fixture
def annotator_in(browser):
    """An annotator in Chromium on the given server; the browser context is closed at the
    end (its kept-alive connections would hold the live server's threads and their
    database sessions)."""
    annotators = []

    def start(base: str) -> Annotator:
        annotators.append(Annotator(browser, base))
        return annotators[-1]

    yield start
    for annotator in annotators:
        annotator.context.close()


def judgments_in(database_url: str, annotator_email: str) -> dict[int, int]:
    """Judgments per assignment of one annotator, read from a database directly."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT j.assignment_id, count(*) FROM annotation_judgment j "
            "JOIN auth_user u ON u.id = j.annotator_id WHERE u.email = %s GROUP BY 1",
            [annotator_email],
        ).fetchall()
    return dict(rows)


def submit_url(base: str, project, assignment: int) -> str:
    return f"{base}/projects/{project.pk}/annotate/{assignment}/submit/"


def now_ms() -> float:
    return time.time() * 1000


# --- the drills ---------------------------------------------------------------------------


def test_annotation_goes_on_while_redis_is_stopped_and_restarted(
    annotator_in, transactional_db, acme, chosen, redis_back
):
    project = project_with_items(acme.organization, 12)
    server, private_redis = chosen, redis_back
    annotator = annotator_in(server.base)
    annotator.start(acme.annotator.email, project.pk)
    judged = [annotator.judge()]

    private_redis.stop()
    stopped = now_ms()
    judged += [annotator.judge(), annotator.judge()]
    annotator.page.get_by_role("link", name="History").click()
    expect(annotator.page.locator("#history tbody tr")).to_have_count(3)
    # Logging out and in again: allauth's rate limits count in the process's memory.
    annotator.page.get_by_role("button", name="Log out").click()
    annotator.page.wait_for_url(re.compile("/accounts/login/"))
    annotator.start(acme.annotator.email, project.pk)
    judged.append(annotator.judge())
    wait_until(lambda: now_ms() - stopped > 5000, 30, "5 s without Redis", annotator.page)
    private_redis.start(wait=False)
    wait_until(private_redis.answers, 30, "Redis to start again", annotator.page)
    restarted = now_ms()

    # The same session goes on with Redis back (no new log-in).
    judged += [annotator.judge(), annotator.judge()]
    annotator.page.reload()
    expect(annotator.page.locator("#progress-text")).to_have_text(re.compile(r"^6 of "))

    with scopes_disabled():
        stored = list(Judgment.objects.filter(annotator=acme.annotator).values_list("assignment"))
    assert sorted(a for (a,) in stored) == sorted(judged)
    assert annotator.errors() == []
    assert annotator.script_problems() == []
    log = server.output()
    assert "Redis (cache) unavailable" in log and "Redis (cache) answers again" in log
    assert "Traceback" not in log
    during = [r for r in annotator.responses if stopped <= r[0] <= restarted]
    print(
        f"\nRedis drill: stopped {(restarted - stopped) / 1000:.1f} s; "
        f"{len(annotator.responses)} responses ({len(during)} while stopped), 0 5xx; "
        f"{len(judged)} judgments stored once each"
    )


def test_a_submit_during_a_postgresql_restart_is_retried_until_stored_once(
    annotator_in, transactional_db, acme, private_postgres, serve, settings
):
    project = project_with_items(acme.organization, 12)
    database_url = private_postgres.copy_of(database_of_the_tests(), "chosen_h2_drill")
    server = serve(database_url=database_url, redis_url=settings.REDIS_URL)
    annotator = annotator_in(server.base)
    annotator.start(acme.annotator.email, project.pk)
    judged = [annotator.judge()]
    workers = server.workers()

    # One submit is in the middle of its transaction (waiting for this lock) when the
    # database goes down: its session is ended under it. Then every request finds no server.
    holder = psycopg.connect(database_url)
    holder.execute(
        "SELECT id FROM annotation_assignment WHERE id = %s FOR UPDATE", [annotator.on_screen()]
    )
    judged.append(annotator.press_a_and_enter())
    wait_until(lambda: waiting_for_a_lock(database_url, holder), 30, "the submit", annotator.page)
    stopping = now_ms()
    private_postgres.stop()
    holder.close()
    annotator.says(DATABASE_RESTARTING)
    # A page loaded in the gap: a clear 503 that says when to come back.
    page = annotator.page.request.get(f"{server.base}/projects/{project.pk}/annotate/")
    assert page.status == 503 and page.headers["retry-after"] == "5"
    assert "The database is restarting" in page.text()
    fragment = annotator.page.request.get(
        f"{server.base}/projects/{project.pk}/annotate/", headers={"X-Chosen-Fragment": "1"}
    )
    assert fragment.status == 503
    assert fragment.json() == {
        "retry": True,
        "message": DATABASE_RESTARTING,
        "code": "database_unavailable",
    }
    wait_until(lambda: now_ms() - stopping > 10_000, 30, "10 s without PostgreSQL", annotator.page)
    private_postgres.start(wait=False)
    wait_until(private_postgres.answers, 60, "PostgreSQL to start again", annotator.page)
    restarted = now_ms()

    annotator.sees_next(judged[-1], timeout=90_000)
    judged.append(annotator.judge())  # and on as before
    assert server.process.poll() is None and server.workers() == workers  # no restart

    assert judgments_in(database_url, acme.annotator.email) == dict.fromkeys(judged, 1)
    inside = annotator.errors(within=(stopping, restarted))
    assert annotator.errors(within=(stopping, restarted), outside=True) == []
    assert inside and {status for _, status, _ in inside} == {503}
    assert annotator.script_problems() == []
    log = server.output()
    assert "PostgreSQL unavailable" in log and "Traceback" not in log
    assert log.count("PostgreSQL unavailable") <= len(workers)  # once per web worker
    assert "Service Unavailable" not in log  # one warning per outage, not a line per request
    print(
        f"\nPostgreSQL drill: down {(restarted - stopping) / 1000:.1f} s; the annotator saw "
        f"'{DATABASE_RESTARTING}' for {annotator.shown_for(DATABASE_RESTARTING):.1f} s; "
        f"5xx inside the window {len(inside)} (all 503, the page's retries), outside 0; "
        f"{len(judged)} judgments stored once each"
    )


def test_a_submit_whose_worker_is_killed_is_retried_and_stored_once(
    annotator_in, transactional_db, acme, chosen
):
    project = project_with_items(acme.organization, 12)
    server = chosen
    annotator = annotator_in(server.base)
    annotator.start(acme.annotator.email, project.pk)
    judged = [annotator.judge()]

    # The submit will wait for this lock: its worker is surely in the middle of it.
    with psycopg.connect(database_of_the_tests()) as held:
        held.execute(
            "SELECT id FROM annotation_assignment WHERE id = %s FOR UPDATE",
            [annotator.on_screen()],
        )
        judged.append(annotator.press_a_and_enter())

        def waiting() -> list[int]:
            return waiting_for_a_lock(database_of_the_tests(), held)

        wait_until(waiting, 30, "the submit to wait", annotator.page)
        worker = server.worker_connected_from(waiting()[0])
        os.kill(worker, signal.SIGKILL)
        annotator.says(NO_ANSWER)
        held.rollback()

    annotator.sees_next(judged[-1])
    judged.append(annotator.judge())
    with scopes_disabled():
        stored = list(Judgment.objects.filter(annotator=acme.annotator).values_list("assignment"))
    assert sorted(a for (a,) in stored) == sorted(judged)
    # The killed request got no answer at all; the page's retry got one from another worker.
    # (A static file the browser was fetching from the killed worker, the favicon say, may
    # have gone unanswered too: it is not a submit.)
    unanswered = [url for _, url in annotator.unanswered if "/static/" not in url]
    assert unanswered == [submit_url(server.base, project, judged[1])]
    assert server.process.poll() is None and worker not in server.workers()
    assert annotator.errors() == []
    assert annotator.script_problems() == []
    print(
        f"\nWorker-kill drill: the annotator saw '{NO_ANSWER}' for "
        f"{annotator.shown_for(NO_ANSWER):.1f} s; {len(judged)} judgments stored once each"
    )


def waiting_for_a_lock(database_url: str, held) -> list[int]:
    """The client ports of the database sessions waiting for a lock (but ``held``'s)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT client_port FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> %s",
            [held.info.backend_pid],
        ).fetchall()
    return [port for (port,) in rows]


def test_a_submit_whose_answer_was_lost_after_it_was_stored_is_stored_once(
    annotator_in, transactional_db, live_server, acme
):
    project = project_with_items(acme.organization, 12)
    annotator = annotator_in(live_server.url)
    annotator.start(acme.annotator.email, project.pk)
    lost = []

    def store_then_lose_the_answer(route):
        answer = route.fetch()  # the server stores the judgment and answers …
        lost.append(answer.json())
        route.abort("connectionreset")  # … and the answer never reaches the page

    annotator.page.route("**/submit/", store_then_lose_the_answer, times=1)
    judged = annotator.press_a_and_enter()
    annotator.sees_next(judged)

    assert lost and lost[0]["message"] == SAVED
    # The retry answered with the item the lost answer carried: none skipped, none doubled.
    next_item = int(re.search(r'data-assignment="(\d+)"', lost[0]["html"]).group(1))
    assert annotator.on_screen() == next_item
    with scopes_disabled():
        assert Judgment.objects.filter(assignment_id=judged).count() == 1
        assert Judgment.objects.filter(annotator=acme.annotator).count() == 1
    assert annotator.shown_for(NO_ANSWER) > 0
    assert annotator.script_problems() == []


def test_log_in_goes_on_and_failed_log_ins_stay_limited_while_redis_is_down(
    client, acme, redis_back, settings, caplog
):
    """allauth's rate limits count in each web process's memory while Redis is away: five
    wrong passwords still lock the account (on that process; with W workers at most W
    times the limit), and everyone else logs in."""
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": redis_back.url}}
    redis_back.stop()

    for _ in range(5):
        failed = log_in(client, acme.lead.email, "wrong password")
        assert failed.status_code == 200 and "_auth_user_id" not in client.session
    blocked = log_in(client, acme.lead.email, PASSWORD)
    assert "Too many failed login attempts" in blocked.content.decode()
    assert "_auth_user_id" not in client.session
    other = Client()
    assert log_in(other, acme.annotator.email).status_code == 302
    assert other.get(reverse("annotation:home")).status_code == 200

    said = [r for r in caplog.records if r.name == "tasks.outages"]
    assert len(said) == 1 and said[0].getMessage().startswith("Redis (cache) unavailable")
    assert said[0].levelname == "WARNING" and said[0].exc_info is None  # no traceback


def test_the_threads_of_a_web_process_share_one_redis_outage(redis_back, settings, caplog):
    """Django makes a cache per thread; gunicorn serves with threads. While Redis is away
    the process warns once and leaves Redis alone for a moment, not once per thread."""
    import threading

    from django.core.cache import caches

    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": redis_back.url}}
    redis_back.stop()
    answers = []

    def a_request():
        answers.append(caches["default"].get_or_set("progress", 7))

    threads = [threading.Thread(target=a_request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [7] * 8
    said = [r for r in caplog.records if r.name == "tasks.outages"]
    assert len(said) == 1 and said[0].getMessage().startswith("Redis (cache) unavailable")


def terminate_this_connection(get_response):
    """Test middleware (after DatabaseOutageMiddleware): PostgreSQL ends this request's
    session, as a restart does, after the outage check passed and before the next
    middleware reads the membership."""

    def middleware(request):
        pid = connection.connection.info.backend_pid
        with psycopg.connect(_dsn()) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [pid])
        return get_response(request)

    return middleware


def _dsn() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def test_a_database_lost_inside_a_later_middleware_is_a_503_not_a_500(
    transactional_db, acme, settings, caplog
):
    middleware = list(settings.MIDDLEWARE)
    middleware.insert(
        middleware.index("tasks.outages.DatabaseOutageMiddleware") + 1,
        "tests.integration.test_outages.terminate_this_connection",
    )
    settings.MIDDLEWARE = middleware
    client = Client(raise_request_exception=False)
    client.force_login(acme.annotator)
    response = client.get(
        f"/projects/{acme.project.pk}/annotate/", headers={"X-Chosen-Fragment": "1"}
    )
    assert response.status_code == 503
    assert response.json() == {
        "retry": True,
        "message": DATABASE_RESTARTING,
        "code": "database_unavailable",
    }
    assert [r for r in caplog.records if r.name == "django.request"] == []
    said = [r.getMessage() for r in caplog.records if r.name == "tasks.outages"]
    assert any(m.startswith("PostgreSQL unavailable") for m in said)
    connection.close()  # the terminated session: the next use connects again
