"""Chat & Choose under load: experts chatting with a streaming model beside annotators
judging ordinary pairs, on the production stack of docker compose.

Started here, stopped here (``finally``, and on SIGTERM/SIGHUP through preflight):
- gunicorn with the production settings, 4 workers x 12 threads (the Dockerfile's and
  compose's WEB_WORKERS / WEB_THREADS defaults; ``--web-workers``, ``--web-threads``),
  through annotation_load's ``start_gunicorn``
  with ``GUNICORN_CMD_ARGS`` adding the threads;
- compose's two Celery workers: the jobs' worker (``-Q celery``, 2 prefork processes,
  WORKER_CONCURRENCY) and the chat worker that generates the turns (``chat.jobs.
  generate_turn`` on the ``chat`` queue: ``--pool threads``, 16 threads,
  CHAT_WORKER_CONCURRENCY; ``--chat-threads``);
- a fake OpenAI-compatible streaming server in a process of its own (``--serve-model``):
  each reply is 60-120 tokens at 40 tokens/s after 0.1 s, and its first token carries the
  reply's id and the time it is written (the same host clock as the clients).

Simulated people, with httpx-free asyncio requests (annotation_load's ``request``):
- experts: start a conversation, send a message, poll the turn's events as the page does
  (``static/js/chat.js``: the next poll 50 ms after an answer until the first words, then
  200 ms; 500 ms while the turn is still queued after its first second), fetch the
  conversation's next state (the workspace, as the page does) when it ends, read the two
  replies and judge them (5-15 s, as long as the annotators take for one pair), write the
  next message (3-10 s) and send it; a new conversation when the project's turn limit is
  reached. ``--fast-experts`` is the profile of the runs before 2026-11-30: 3-8 s between
  the end of a turn and the next message, all told (a turn every 7-12 s per expert, faster
  than an annotator judges one pair);
- annotators: annotation_load's ``annotator`` on a 10,000-item pairwise project (submit+next
  in one round trip, think 5-15 s).

Measured: submit+next p50/p95/p99 and errors; first token to page = the time the polling
expert first receives a reply's token minus the time the server wrote that token, p50/p95/
p99; chat errors (a request that is not 2xx/3xx where one is expected, a failed turn). For
information: the time from send to the first token on the page (it includes any wait for
a free chat thread), the events poll p95, turns finished, the load average, how busy the
machine's cores were, and the host's speed before and after (bench/preflight.py: on these
shared machines a p95 is read beside it).

    .venv/bin/python bench/chat_load.py --quick          # 10 experts + 10 annotators, 30 s
    .venv/bin/python bench/chat_load.py                  # 50 + 50, 120 s
"""

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from annotation_load import (  # noqa: E402
    annotator,
    fill,
    request,
    server_env,
    setup_django,
    start_gunicorn,
)
from benchdb import DATABASE_URL, REDIS_URL, prepare_database  # noqa: E402
from preflight import (  # noqa: E402
    cpu_times,
    free_port,
    host_report,
    reference_loop_ms,
    require_modules,
    require_postgres,
    require_redis,
    stop_on_signals,
)

from project.embedded import Child  # noqa: E402

TARGET_SUBMIT_P95_MS = 100
TARGET_FIRST_TOKEN_P95_MS = 200
WEB_WORKERS, WEB_THREADS = 4, 12
WORKER_CONCURRENCY = 2
CHAT_WORKER_THREADS = 16
ITEMS = 10_000
TOKENS_PER_SECOND = 40
REPLY_TOKENS = (60, 120)
FIRST_DELAY = 0.1
POLL_SECONDS, STREAM_POLL_SECONDS = 0.05, 0.2
QUEUED_FAST_SECONDS, QUEUED_POLL_SECONDS = 1.0, 0.5  # static/js/chat.js
EXPERT_THINK = (5.0, 15.0)  # reading two replies and judging them
EXPERT_WRITE = (3.0, 10.0)  # writing the next message
FAST_EXPERTS = (3.0, 8.0), (0.0, 0.0)  # --fast-experts
ANNOTATOR_THINK = (5.0, 15.0)
# A turn still streaming when the run ends is followed this much longer, then let go.
GRACE_SECONDS = 30
REPLY_ID = re.compile(r"\brid(\d+)t(\d+\.\d+)")
EVENTS_URL = re.compile(r'data-events-url="([^"]+)" data-events-key="([^"]*)"')
JUDGE_FORM = re.compile(r'id="judge-form"')
FIRST_LABEL = re.compile(r'type="radio" name="preference" value="([^"]+)"')


# --- the model -----------------------------------------------------------------------------


class StreamingModel:
    """The fake OpenAI-compatible streaming chat server, in a process of its own: its
    threads write the tokens of every reply in flight, and in the clients' process they
    would take the GIL from the clients' event loop and add their waits to what is
    measured. Each reply's first token carries the reply's id and the time (time.time())
    it was written: ``rid<id>t<time>``."""

    def __init__(self):
        self.log = Path(tempfile.mkstemp(prefix="chat-load-model-", suffix=".log")[1])
        self.child = Child("fake model", [sys.executable, __file__, "--serve-model"], log=self.log)
        deadline = time.monotonic() + 30
        while not (url := self.log.read_text().partition("\n")[0].strip()).startswith("http"):
            if time.monotonic() > deadline or not self.child.running():
                self.close()
                raise SystemExit(f"the fake model did not start: {self.log.read_text()}")
            time.sleep(0.05)
        self.url = url

    def close(self):
        self.child.stop()
        self.log.unlink(missing_ok=True)


def serve_model() -> None:
    """``--serve-model``: the fake model's process (see StreamingModel); prints its URL."""
    from tests.fake_llm import LocalServer, QuietHandler

    replies = itertools.count(1)

    class Handler(QuietHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            asked = json.loads(self.rfile.read(length))
            rid = next(replies)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            time.sleep(FIRST_DELAY)
            interval = 1 / TOKENS_PER_SECOND
            for n in range(random.randint(*REPLY_TOKENS)):  # noqa: S311 (a fake)
                piece = f"rid{rid}t{time.time():.6f} " if n == 0 else f"w{n} "
                self.event(asked, {"role": "assistant", "content": piece}, None)
                time.sleep(interval)
            self.event(asked, {}, "stop")
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

        def event(self, asked, delta, finish):
            chunk = {
                "id": "chatcmpl-bench",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": asked["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()

    server = LocalServer()
    server.serve(Handler)
    print(server.url, flush=True)
    threading.Event().wait()  # until stopped (SIGTERM)


# --- the data ------------------------------------------------------------------------------


def fill_chat(model_url: str, annotators: int, experts: int) -> dict:
    """annotation_load's project of ITEMS pairs and sessions for everyone, and beside it a
    chat project on the fake model (2 replies per turn, the most turns the settings allow)."""
    from django_scopes import scopes_disabled

    from chat import services
    from tasks.models import GenerationRecipe, LLMEndpoint, Project
    from tasks.schema import default_questions

    project_id, keys = fill(ITEMS, annotators + experts)
    with scopes_disabled():
        pairwise = Project.objects.get(pk=project_id)
        organization = pairwise.organization
        endpoint, _ = LLMEndpoint.objects.update_or_create(
            name="bench-streaming",
            defaults={
                "base_url": model_url,
                "model": "bench-model",
                "all_organizations": True,
                "enabled": True,
                "max_concurrent_requests": 200,
                "timeout_seconds": 60,
            },
        )
        GenerationRecipe.objects.update_or_create(
            organization=organization,
            name="Bench",
            defaults={
                "variants": [
                    {"name": f"v{n}", "temperature": 0.3 * n, "max_tokens": 200, "seed": n}
                    for n in (1, 2)
                ]
            },
        )
        chat = Project.objects.create(
            organization=organization,
            name="chat load",
            status="active",
            questions=default_questions("pairwise"),
        )
        services.save_settings(
            project=chat,
            endpoints=[endpoint],
            recipes=["Bench"],
            system_prompt="Be brief.",
            replies_per_turn=2,
            max_turns=100,
            concurrent_replies=64,
        )
    return {
        "pairwise": project_id,
        "chat": chat.pk,
        "endpoint": endpoint.pk,
        "annotators": keys[:annotators],
        "experts": keys[annotators:],
    }


# --- the expert ----------------------------------------------------------------------------


class Expert:
    """One expert's session: the requests of the chat page, as its script sends them."""

    def __init__(self, port: int, project_id: int, session_key: str, stats: dict, profile):
        csrf = secrets.token_hex(16)
        self.port, self.project, self.stats = port, project_id, stats
        self.think, self.write = profile
        self.page = {"Cookie": f"sessionid={session_key}; csrftoken={csrf}", "X-CSRFToken": csrf}
        self.fragment = {**self.page, "X-Chosen-Fragment": "1"}

    def error(self, what: str) -> None:
        self.stats["chat_errors"].append(what)

    async def post(self, path: str, form: dict, headers: dict):
        return await request(self.port, "POST", path, headers, urlencode(form).encode())

    async def start(self, endpoint_id: int) -> int | None:
        status, _, location = await self.post_for_location(
            f"/projects/{self.project}/chat/new/", {"endpoint": endpoint_id, "recipe": "Bench"}
        )
        found = re.search(r"/chat/(\d+)/", location)
        if status != 302 or not found:
            self.error(f"start {status}")
            return None
        return int(found.group(1))

    async def post_for_location(self, path: str, form: dict):
        """A POST answered with a redirect: (status, body, Location)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        body = urlencode(form).encode()
        head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in self.page.items()]
        head += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        response = await reader.read()
        writer.close()
        head_text = response.partition(b"\r\n\r\n")[0].decode("latin-1")
        status = int(head_text.split()[1])
        location = re.search(r"(?im)^location: (.+)$", head_text)
        return status, response, location.group(1).strip() if location else ""

    async def turn(self, conversation: int, n: int, until: float) -> str:
        """Send a message, follow its stream to the end; "ok", "limit" or "error"."""
        base = f"/projects/{self.project}/chat/{conversation}"
        sent = time.time()
        status, payload = await self.post(
            f"{base}/send/", {"text": f"Question {n}: tell me about tea."}, self.fragment
        )
        if status == 409:
            return "limit"
        found = EVENTS_URL.search(json.loads(payload)["html"]) if status == 200 else None
        if not found:
            self.error(f"send {status}")
            return "error"
        (events, key), after, seen = found.groups(), "0", set()
        polling_since, writing = time.monotonic(), False
        while True:
            started = time.perf_counter()
            poll = f"{events}?after={after}&key={key}"  # the page's key (chat/middleware.py)
            status, payload = await request(self.port, "GET", poll, self.page)
            received = time.time()
            self.stats["poll_ms"].append((time.perf_counter() - started) * 1000)
            if status != 200:
                self.error(f"events {status}")
                return "error"
            data = json.loads(payload)
            ended = False
            for event in data["events"]:
                after = event["id"]
                writing = writing or event["kind"] == "token"
                if event["kind"] == "token" and event["reply"] not in seen:
                    seen.add(event["reply"])
                    rid = REPLY_ID.search(event["text"])
                    if rid:
                        emitted = float(rid.group(2))
                        self.stats["first_token_ms"].append((received - emitted) * 1000)
                        self.stats["send_to_token_ms"].append((received - sent) * 1000)
                    else:
                        self.error("a first token without its reply's id")
                if event["kind"] == "end":
                    ended = True
                    if event["status"] != "succeeded":
                        self.error(f"turn failed: {event.get('message', '')[:80]}")
                        return "error"
            if ended or (data["finished"] and not data["events"]):
                break
            if time.monotonic() > until + GRACE_SECONDS:
                self.stats["unfinished"] += 1
                return "error"
            queued = data["status"] == "queued" and not data["events"]
            if writing:
                await asyncio.sleep(STREAM_POLL_SECONDS)
            elif queued and time.monotonic() - polling_since > QUEUED_FAST_SECONDS:
                self.stats["queued_polls"] += 1
                await asyncio.sleep(QUEUED_POLL_SECONDS)
            else:
                await asyncio.sleep(POLL_SECONDS)
        # The page fetches the conversation's next state (the workspace, chat.js nextState).
        status, payload = await request(self.port, "GET", f"{base}/", self.fragment)
        html = json.loads(payload)["html"] if status == 200 else ""
        if not JUDGE_FORM.search(html):
            self.error(f"next state {status}")
            return "error"
        label = FIRST_LABEL.search(html)
        await asyncio.sleep(random.uniform(*self.think))  # noqa: S311 (reading, think time)
        status, _ = await self.post(
            f"{base}/judge/",
            {
                "preference": label.group(1) if label else "",
                "reasoning": "Clearer.",
                "time_spent_ms": "4000",
            },
            self.fragment,
        )
        if status != 200:
            self.error(f"judge {status}")
            return "error"
        self.stats["turns"] += 1
        return "ok"

    async def run(self, endpoint_id: int, until: float) -> None:
        await asyncio.sleep(random.uniform(0, self.think[1]))  # noqa: S311 (not all at once)
        n = 0
        conversation = None
        while time.monotonic() < until:
            if conversation is None:
                conversation = await self.start(endpoint_id)
                if conversation is None:
                    return
            await asyncio.sleep(random.uniform(*self.write))  # noqa: S311 (writing the message)
            if time.monotonic() >= until:
                return
            n += 1
            outcome = await self.turn(conversation, n, until)
            if outcome == "limit":
                conversation = None
            elif outcome == "error":
                return


# --- the run -------------------------------------------------------------------------------


async def loop_lag(until: float, into: list) -> None:
    """How late the clients' event loop wakes from a 10 ms sleep, in ms: the part of every
    time measured here that is the load generator's own wait (a browser per person has
    none of it)."""
    while time.monotonic() < until:
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        into.append((time.perf_counter() - started - 0.01) * 1000)


def start_workers(concurrency: int, chat_threads: int) -> list[Child]:
    """compose's workers: the jobs' (``-Q celery``, ``concurrency`` processes) and the chat
    worker (``-Q chat``, ``chat_threads`` threads), ready when both answer a ping."""
    from project.celery import app

    app.control.purge()  # jobs and turns left queued by an earlier, interrupted run
    celery = [sys.executable, "-m", "celery", "-A", "project", "worker", "--loglevel=WARNING"]
    workers = []
    try:
        workers.append(
            Child(
                "celery worker",
                [*celery, "-Q", "celery", f"--concurrency={concurrency}", "-n", "jobs@%h"],
                env=server_env(),
            )
        )
        workers.append(
            Child(
                "celery chat worker",
                [*celery, "-Q", "chat", "--pool", "threads", f"--concurrency={chat_threads}"]
                + ["-n", "chat@%h"],
                env=server_env(),
            )
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and all(worker.running() for worker in workers):
            if len(app.control.ping(timeout=1)) >= len(workers):
                return workers
        raise SystemExit("the Celery workers did not start")
    except BaseException:
        for worker in workers:
            worker.stop()
        raise


def run(
    experts: int,
    annotators: int,
    seconds: float,
    concurrency: int,
    chat_threads: int,
    profile=(EXPERT_THINK, EXPERT_WRITE),
    web=(WEB_WORKERS, WEB_THREADS),
):
    web_workers, web_threads = web
    stats = {
        "next_ms": [],
        "submit_ms": [],
        "errors": [],
        "chat_errors": [],
        "first_token_ms": [],
        "send_to_token_ms": [],
        "poll_ms": [],
        "lag_ms": [],
        "queued_polls": 0,
        "turns": 0,
        "unfinished": 0,
    }
    model = StreamingModel()
    started = []
    try:
        ids = fill_chat(model.url, annotators, experts)
        # gunicorn reads further options from GUNICORN_CMD_ARGS: the threads of production,
        # after any the caller gave (a profiling hook's config, say).
        given = os.environ.get("GUNICORN_CMD_ARGS", "")
        os.environ["GUNICORN_CMD_ARGS"] = f"{given} --threads {web_threads}".strip()
        port = free_port()
        started.append(start_gunicorn(port, web_workers))
        started.extend(start_workers(concurrency, chat_threads))
        stats["load_before"] = os.getloadavg()
        stats["loop_before"], stats["cpu_before"] = reference_loop_ms(), cpu_times()
        until = time.monotonic() + seconds

        async def main():
            people = [
                annotator(port, ids["pairwise"], key, until, stats, ANNOTATOR_THINK)
                for key in ids["annotators"]
            ]
            people += [
                Expert(port, ids["chat"], key, stats, profile).run(ids["endpoint"], until)
                for key in ids["experts"]
            ]
            await asyncio.gather(*people, loop_lag(until, stats["lag_ms"]))

        asyncio.run(main())
        stats["load_after"] = os.getloadavg()
        stats["cpu_after"], stats["loop_after"] = cpu_times(), reference_loop_ms()
    finally:
        for child in reversed(started):
            child.stop()
        model.close()
    return stats


def percentile(values: list[float], q: int) -> float:
    if not values:
        return float("inf")  # nothing measured is a failure, not a fast run
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(stats: dict, args) -> bool:
    ok_all = True

    def line(metric, measured, target="", ok=True):
        nonlocal ok_all
        ok_all = ok_all and ok
        verdict = ("yes" if ok else "NO") if target else ""
        print(f"{metric:<44} {measured:>22} {target:>10}  {verdict}")

    def spread(values):
        return " / ".join(f"{percentile(values, q):.0f}" for q in (50, 95, 99))

    load = " ".join(f"{x:.2f}" for x in stats["load_before"])
    (think, write) = FAST_EXPERTS if args.fast_experts else (EXPERT_THINK, EXPERT_WRITE)
    print(
        f"\nChat & Choose load: {args.experts} experts + {args.annotators} annotators, "
        f"{args.seconds:.0f} s; gunicorn {args.web_workers} workers x {args.web_threads} threads "
        f"(production settings), Celery workers: jobs {args.worker_concurrency} processes, "
        f"chat {args.chat_threads} threads; fake model "
        f"{TOKENS_PER_SECOND} tokens/s, {REPLY_TOKENS[0]}-{REPLY_TOKENS[1]} tokens a reply; "
        f"{os.cpu_count()} cores, load average at start {load}; experts judge in "
        f"{think[0]:.0f}-{think[1]:.0f} s and write in {write[0]:.0f}-{write[1]:.0f} s"
    )
    print(f"{'metric':<44} {'measured':>22} {'target':>10}  ok")
    submits, first = stats["submit_ms"], stats["first_token_ms"]
    line(
        "annotators' submit+next p95 (ms)",
        f"{percentile(submits, 95):.1f}",
        f"< {TARGET_SUBMIT_P95_MS}",
        percentile(submits, 95) < TARGET_SUBMIT_P95_MS,
    )
    line("  p50 / p95 / p99 (ms)", spread(submits))
    line("  judgments submitted", f"{len(submits):,}")
    line("  annotator errors", f"{len(stats['errors'])}", "0", not stats["errors"])
    line(
        "first token to page p95 (ms)",
        f"{percentile(first, 95):.1f}",
        f"< {TARGET_FIRST_TOKEN_P95_MS}",
        percentile(first, 95) < TARGET_FIRST_TOKEN_P95_MS,
    )
    line("  p50 / p95 / p99 (ms)", spread(first))
    line("  replies measured", f"{len(first):,}")
    line("  chat errors", f"{len(stats['chat_errors'])}", "0", not stats["chat_errors"])
    line("turns judged (information)", f"{stats['turns']:,}")
    line("send to first token p50 / p95 / p99 (ms)", spread(stats["send_to_token_ms"]))
    line("events poll p50 / p95 / p99 (ms)", spread(stats["poll_ms"]))
    line("events polls", f"{len(stats['poll_ms']):,}")
    line("  of turns still queued (every 500 ms)", f"{stats['queued_polls']:,}")
    line("turns still streaming at the end", f"{stats['unfinished']}")
    line("clients' event loop lag p50 / p95 / p99 (ms)", spread(stats["lag_ms"]))
    line("load average at the end", " ".join(f"{x:.2f}" for x in stats["load_after"]))
    for label, value in host_report(
        stats["loop_before"], stats["loop_after"], stats["cpu_before"], stats["cpu_after"]
    ):
        line(label, value)
    print("  (a neighbour that slows this host slows every request with it)")
    for what, count in sorted(_counted(stats["chat_errors"] + stats["errors"]).items()):
        print(f"  error: {what} x{count}")
    return ok_all


def _counted(errors: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for error in errors:
        counts[error] = counts.get(error, 0) + 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--experts", type=int, default=50)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--quick", action="store_true", help="10 experts + 10 annotators, 30 s")
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=WORKER_CONCURRENCY,
        help="the jobs' worker's processes (compose's WORKER_CONCURRENCY, default 2)",
    )
    parser.add_argument(
        "--chat-threads",
        type=int,
        default=CHAT_WORKER_THREADS,
        help="the chat worker's threads (compose's CHAT_WORKER_CONCURRENCY, default 16)",
    )
    parser.add_argument(
        "--web-workers",
        type=int,
        default=WEB_WORKERS,
        help=f"gunicorn's processes (compose's WEB_WORKERS, default {WEB_WORKERS})",
    )
    parser.add_argument(
        "--web-threads",
        type=int,
        default=WEB_THREADS,
        help=f"gunicorn's threads per process (compose's WEB_THREADS, default {WEB_THREADS})",
    )
    parser.add_argument(
        "--fast-experts",
        action="store_true",
        help="experts send their next message 3-8 s after a turn ends (the earlier profile)",
    )
    parser.add_argument("--serve-model", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_model:
        serve_model()
        return 0
    if args.quick:
        args.experts, args.annotators, args.seconds = 10, 10, 30
    require_modules("httpx", "gunicorn", "celery", "openai")
    require_postgres(DATABASE_URL)
    require_redis(REDIS_URL)
    stop_on_signals()
    prepare_database()
    setup_django()
    # The annotate page is loaded whole first: its static files as the production image has
    # them, with the manifest of the production storage.
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=server_env(),
        check=True,
    )
    print(
        f"{args.experts} experts + {args.annotators} annotators, {args.seconds:.0f} s",
        flush=True,
    )
    stats = run(
        args.experts,
        args.annotators,
        args.seconds,
        args.worker_concurrency,
        args.chat_threads,
        FAST_EXPERTS if args.fast_experts else (EXPERT_THINK, EXPERT_WRITE),
        web=(args.web_workers, args.web_threads),
    )
    return 0 if report(stats, args) else 1


if __name__ == "__main__":
    sys.exit(main())
