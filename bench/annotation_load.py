"""Annotation load benchmark: gunicorn with the production settings on PostgreSQL, N
simulated annotators each looping "fetch the next item, submit a judgment" (the submit
answers with the next item: one round trip per judgment).

Targets (issue 4), on this 2-core machine:
- at 50 concurrent annotators: submit+next p95 under 50 ms, zero errors;
- the p95 with 1,000,000 items in the project within 1.5x of the p95 with 10,000.

Each annotator thinks 5-15 s between submits (--think). The seed guides expect 40-60 pairs
an hour from an expert, a judgment every 60-90 s, so these annotators work 4-18x faster
than the fastest real ones. --stress adds, for information, a run at 0.5-1.5 s (a ~60x load)
that shows where this 2-core machine saturates. A CPU reference time is printed so runs of
different days can be compared (these machines are shared and their speed varies).

Projects are filled with SQL (prompts, two candidates, one pairwise item each) so the
million-item run does not take an hour to set up.

    .venv/bin/python bench/annotation_load.py                 # 10k and 1M items, 50 annotators
    .venv/bin/python bench/annotation_load.py --sizes 10000 --seconds 20 --stress
"""

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchdb import DATABASE_URL, REDIS_URL, fill_pairwise_items, prepare_database  # noqa: E402
from preflight import (  # noqa: E402
    free_port,
    require_modules,
    require_postgres,
    require_redis,
    stop_on_signals,
)

from project.embedded import Child  # noqa: E402

# The sessions made here must be valid for the server: one secret for both.
SECRET_KEY = secrets.token_urlsafe(64)
TARGET_P95_MS = 50
TARGET_SCALING = 1.5
ASSIGNMENT = re.compile(r'data-assignment="(\d+)"')


def setup_django():
    os.environ["DATABASE_URL"] = DATABASE_URL
    os.environ["DJANGO_SECRET_KEY"] = SECRET_KEY
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def fill(n_items: int, n_annotators: int) -> tuple[int, list[str]]:
    """A fresh project with ``n_items`` pairwise items and annotators with sessions.
    Returns the project id and one session key per annotator."""
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection
    from django_scopes import scopes_disabled

    from tasks.models import Membership, Organization, Project, Role
    from tasks.schema import default_questions

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE annotation_judgmentrevision, annotation_judgment, annotation_assignment, "
            "tasks_itemcandidate, tasks_item, tasks_candidate, tasks_prompt, tasks_project, "
            "tasks_membership, django_session CASCADE"
        )
    User = get_user_model()
    with scopes_disabled():
        org, _ = Organization.objects.get_or_create(slug="load", defaults={"name": "Load"})
        project = Project.objects.create(
            organization=org,
            name=f"load {n_items}",
            status="active",
            questions=default_questions("pairwise"),
            annotations_per_item=2,
        )
        keys = []
        for i in range(n_annotators):
            user, _ = User.objects.get_or_create(
                username=f"load{i}", defaults={"email": f"load{i}@bench"}
            )
            Membership.objects.create(user=user, organization=org, role=Role.ANNOTATOR)
            session = SessionStore()
            session[SESSION_KEY] = str(user.pk)
            session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
            session[HASH_SESSION_KEY] = user.get_session_auth_hash()
            session.create()
            keys.append(session.session_key)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        fill_pairwise_items(cursor, org.pk, project.pk, n_items)
        cursor.execute("ANALYZE")
    print(f"  filled {n_items:,} items in {time.perf_counter() - started:.0f} s", flush=True)
    return project.pk, keys


def server_env() -> dict:
    """The environment of the servers (gunicorn, and a Celery worker where one is needed):
    production settings on the bench database; Redis for the cache, sessions and broker,
    as docker compose runs it."""
    return {
        **os.environ,
        "DJANGO_ENV": "production",
        "DATABASE_URL": DATABASE_URL,
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_SECURE_COOKIES": "false",
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": REDIS_URL,
    }


def start_gunicorn(port: int, workers: int, log: Path | None = None) -> Child:
    """gunicorn in a process group of its own, answering /healthz; stopped (with its
    workers) if it does not come up. The caller stops it with ``.stop()``."""
    import httpx

    server = Child(
        "gunicorn",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "project.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--preload",  # as the image runs it
            "--log-level",
            "warning",
            "--no-control-socket",  # gunicorn 27's default socket is one per user: shared
        ],
        env=server_env(),
        log=log,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.running():
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    return server
            except httpx.HTTPError:
                time.sleep(0.3)
        raise SystemExit("gunicorn did not start" + (f":\n{server.tail()}" if log else ""))
    except BaseException:
        server.stop()
        raise


async def request(
    port: int,
    method: str,
    path: str,
    headers: dict,
    body: bytes = b"",
    content_type: str = "application/x-www-form-urlencoded",
):
    """One HTTP/1.1 request on a new connection (gunicorn's sync workers close it after each
    response): (status, body). A few lines of asyncio instead of an HTTP client library, so
    that the load generator, which shares the two cores with the server, costs little."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    if body:
        head += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    response = await reader.read()  # to EOF: the server closes the connection
    writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), payload


async def timed(into: list, call):
    """Await ``call`` (one or more requests) and add the time it took, in ms, to ``into``."""
    started = time.perf_counter()
    result = await call
    into.append((time.perf_counter() - started) * 1000)
    return result


async def annotator(
    port: int, project_id: int, session_key: str, until: float, stats: dict, think: tuple
):
    csrf = secrets.token_hex(16)
    headers = {
        "Cookie": f"sessionid={session_key}; csrftoken={csrf}",
        "X-Chosen-Fragment": "1",
        "X-CSRFToken": csrf,
    }
    page = request(port, "GET", f"/projects/{project_id}/annotate/", headers)
    status, payload = await timed(stats["next_ms"], page)
    if status != 200:
        stats["errors"].append(f"GET {status}")
        return
    html = json.loads(payload)["html"]
    while time.monotonic() < until:
        await asyncio.sleep(random.uniform(*think))  # noqa: S311 (think time)
        match = ASSIGNMENT.search(html)
        if not match:
            return  # nothing left for this annotator
        form = {
            "preference": random.choice(["Response A is better", "Response B is better"]),  # noqa: S311
            "reasoning": "Clearer and more accurate.",
            "time_spent_ms": "900",
        }
        submit = request(
            port,
            "POST",
            f"/projects/{project_id}/annotate/{match.group(1)}/submit/",
            headers,
            urlencode(form).encode(),
        )
        status, payload = await timed(stats["submit_ms"], submit)
        if status != 200:
            stats["errors"].append(f"POST {status}")
            return
        html = json.loads(payload)["html"]


def p95(values: list[float]) -> float:
    if not values:
        return float("inf")  # nothing measured is a failure, not a fast run
    return statistics.quantiles(values, n=20)[18] if len(values) >= 20 else max(values)


def run_load(n_items: int, annotators: int, seconds: float, workers: int, think: tuple) -> dict:
    project_id, keys = fill(n_items, annotators)
    port = free_port()
    stats = {"next_ms": [], "submit_ms": [], "errors": []}
    server = start_gunicorn(port, workers)
    try:
        until = time.monotonic() + seconds

        async def main():
            await asyncio.gather(
                *(annotator(port, project_id, key, until, stats, think) for key in keys)
            )

        asyncio.run(main())
    finally:
        server.stop()
    return stats


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--think", type=float, nargs=2, default=[5.0, 15.0])
    parser.add_argument("--stress", action="store_true", help="add a 0.5-1.5 s run (info)")
    args = parser.parse_args()
    require_modules("httpx")  # the health check's client (a test dependency)
    require_postgres(DATABASE_URL)
    require_redis(REDIS_URL)
    stop_on_signals()
    prepare_database(["collectstatic", "--noinput"])  # static files, as the image has them
    setup_django()
    started = time.process_time()
    sum(range(10**7))
    reference = time.process_time() - started
    think = tuple(args.think)
    results, stress = {}, None
    for size in args.sizes:
        print(f"{size:,} items, {args.annotators} annotators, {args.seconds:.0f} s:", flush=True)
        results[size] = run_load(size, args.annotators, args.seconds, args.workers, think)
    if args.stress:
        print(f"stress: {min(args.sizes):,} items, think 0.5-1.5 s:", flush=True)
        stress = run_load(
            min(args.sizes), args.annotators, args.seconds / 2, args.workers, (0.5, 1.5)
        )
    print(
        f"\nAnnotation load: gunicorn ({args.workers} workers, production settings), PostgreSQL, "
        f"{os.cpu_count()} cores, {args.annotators} annotators, think time "
        f"{think[0]:g}-{think[1]:g} s; CPU reference sum(range(10**7)) {reference:.3f} s"
    )
    print(f"{'metric':<40} {'measured':>12} {'target':>10}  ok")
    ok_all = True

    def line(metric, measured, target, ok):
        nonlocal ok_all
        ok_all = ok_all and ok
        print(f"{metric:<40} {measured:>12} {target:>10}  {'yes' if ok else 'NO'}")

    for size, stats in results.items():
        submits = stats["submit_ms"]
        line(
            f"submit+next p95 at {size:,} items (ms)",
            f"{p95(submits):.1f}",
            f"< {TARGET_P95_MS}",
            p95(submits) < TARGET_P95_MS,
        )
        line(
            "  median / max (ms)",
            f"{statistics.median(submits):.1f} / {max(submits):.0f}",
            "",
            True,
        )
        line("  judgments submitted", f"{len(submits):,}", "", True)
        line("  first fetch p95 (ms)", f"{p95(stats['next_ms']):.1f}", "", True)
        line("  errors", f"{len(stats['errors'])}", "0", not stats["errors"])
    if len(results) > 1:
        small, large = (results[s]["submit_ms"] for s in (min(results), max(results)))
        ratio = p95(large) / p95(small)
        line(
            f"p95 {max(results):,} / {min(results):,} items",
            f"{ratio:.2f}x",
            f"<= {TARGET_SCALING}x",
            ratio <= TARGET_SCALING,
        )
    if stress is not None:
        submits = stress["submit_ms"]
        print(
            f"{'stress 0.5-1.5 s think: p95 / median':<40} "
            f"{p95(submits):>7.1f} / {statistics.median(submits):.1f}  (information, "
            f"{len(submits):,} judgments, {len(stress['errors'])} errors)"
        )
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
