"""Chosen against Label Studio 1.23.2 on the same work (issue 23), interleaved, repeated.

Work, on both systems in turn (the order alternates between repetitions):
- import of 10k and 100k prompt pairs. Label Studio: its import API (the tasks as one JSON
  body, as its SDK sends them; it imports during the request). Chosen: the
  ``import_prompts`` command, and the API (a JSONL upload that becomes a job a Celery
  worker runs; timed to the job's end);
- export of 10k and 50k annotated items. Label Studio: its export API, synchronous
  (``GET /api/projects/{id}/export?exportType=JSON``) and as a snapshot (create, poll,
  download). Chosen: a TRL export through the API (create, poll, download every file);
- K = 10 / 50 / 200 simulated annotators for 60 s, each thinking 5-15 s as in
  annotation_load.py. Label Studio: ``GET /api/projects/{id}/next`` then ``POST
  /api/tasks/{id}/annotations``; the time from the POST to the next task is one
  "submit+next". Chosen: the annotate page's submit, which answers with the next item;
- the memory of each server: idle (servers up, nothing asked) as PSS, the proportional set
  size, which counts a page the processes share once (the target is judged on it), and as
  the sum of RSS, which counts it in every process (printed beside it); and the peak RSS
  sum during the run. Chosen counts gunicorn and both Celery workers (jobs; chat turns), as
  compose runs them; Label Studio has no worker (without Redis it runs its jobs inside the
  web process).

Both on this machine's PostgreSQL 15 (Label Studio in its own database,
``labelstudio_bench``, dropped and created afresh at each run), both under gunicorn with 4
sync workers, the application loaded once before the workers fork (``--preload``, as
Chosen's image runs it and as uwsgi does by default). Label Studio's ``label-studio
start`` is Django's development server, and its production image runs uwsgi
(``label-studio-uwsgi``), which pip would have to compile; gunicorn runs its documented
WSGI entry point (``core.wsgi``) with the same workers as Chosen, so the two differ by the
application, not by the server. DEBUG off; its version
check, analytics and error reporting (Sentry) off: localhost only. The same data for
both: prompts of 120-400 characters with two responses of 300-800, drawn from one seed.

Label Studio lives in a virtual environment of its own, ``bench/.labelstudio/venv``
(ignored by git), installed from PyPI on first run; its data folder is under a temporary
folder. Everything is checked before anything starts (the virtual environment, httpx,
PostgreSQL, Redis); every server runs in its own process group and is stopped on exit,
error, Ctrl+C or SIGTERM.

    .venv/bin/python bench/vs_label_studio.py                 # everything, 3 repetitions
    .venv/bin/python bench/vs_label_studio.py --quick         # smoke run: 2k, K=10 for 15 s
    .venv/bin/python bench/vs_label_studio.py --sections import export --import-sizes 10000 \\
        --export-sizes 10000 --repetitions 1
"""

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
os.environ.setdefault(
    "BENCH_DATABASE_URL", "postgres://postgres@localhost:5432/chosen_bench_vs"
)  # annotation_load.fill empties the project tables: not the other benchmarks' database
sys.path.insert(0, str(ROOT))
import annotation_load  # noqa: E402
import preflight  # noqa: E402
from benchdb import DATABASE_URL, REDIS_URL, prepare_database  # noqa: E402

from project.embedded import Child  # noqa: E402

LS_VERSION = "1.23.2"
LS_HOME = HERE / ".labelstudio"
LS_VENV = LS_HOME / "venv"
LS_PYTHON = LS_VENV / "bin" / "python"
LS_REQUIREMENTS = [f"label-studio=={LS_VERSION}", "gunicorn==23.0.0"]
LS_DATABASE = "labelstudio_bench"
LS_USER, LS_PASSWORD = "bench@example.com", "bench-password-1234"
WORKERS = 4
SECTIONS = ["import", "export", "annotate", "memory"]

# <Pairwise> between the two responses, the prompt above them.
LS_LABEL_CONFIG = """<View>
  <Text name="prompt" value="$prompt"/>
  <Pairwise name="preference" toName="response_a,response_b"/>
  <Text name="response_a" value="$response_a"/>
  <Text name="response_b" value="$response_b"/>
</View>"""


def ls_result(side: str) -> list:
    return [
        {
            "from_name": "preference",
            "to_name": "response_a,response_b",
            "type": "pairwise",
            "value": {"selected": side},
        }
    ]


# --- the data ----------------------------------------------------------------------------

SAMPLE = (
    "the customer asked whether their order can be returned after thirty days and how "
    "refunds are paid when the package arrived damaged model should explain policy clearly "
    "with steps account billing support escalate apologise verify identity shipping label "
    "warehouse invoice subscription cancel renew discount warranty replacement timeline"
)
WORDS = SAMPLE.split()


def text(rng: random.Random, low: int, high: int) -> str:
    target = rng.randint(low, high)
    words, size = [], 0
    while size < target:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:target].rstrip() + "."


def write_rows(path: Path, n: int, seed: int) -> None:
    """``n`` prompts of 120-400 characters, each with two responses of 300-800, as JSONL."""
    rng = random.Random(seed)
    with path.open("w") as out:
        for i in range(n):
            row = {
                "id": f"p{seed}-{i}",
                "text": f"[{seed}-{i}] " + text(rng, 120, 390),
                "response_a": text(rng, 300, 800),
                "response_b": text(rng, 300, 800),
            }
            out.write(json.dumps(row) + "\n")


def ls_tasks(path: Path, annotated: bool = False) -> bytes:
    """The same rows as Label Studio tasks (one JSON list), each with an annotation if
    ``annotated`` (Label Studio imports annotations with their tasks)."""
    tasks = []
    with path.open() as rows:
        for line in rows:
            row = json.loads(line)
            task = {
                "data": {
                    "prompt": row["text"],
                    "response_a": row["response_a"],
                    "response_b": row["response_b"],
                }
            }
            if annotated:
                task["annotations"] = [{"result": ls_result("left")}]
            tasks.append(task)
    return json.dumps(tasks).encode()


# --- processes and memory ----------------------------------------------------------------


def group_memory_mb(*groups: int) -> dict[str, float]:
    """The memory of every process in the process groups ``groups`` (MB): ``rss``, the sum
    of their resident sets, counts a page shared by N processes (the interpreter, libraries,
    a pre-forked application) N times; ``pss`` (proportional set size, the kernel's
    smaps_rollup) counts it once, split between them: what the processes take from the
    machine together."""
    total = {"rss": 0, "pss": 0}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) not in groups:  # pgrp
                continue
            for line in Path(f"/proc/{entry}/smaps_rollup").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("Rss", "Pss"):
                    total[key.lower()] += int(value.split()[0])  # kB
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
    return {key: kb / 1024 for key, kb in total.items()}


def group_rss_mb(*groups: int) -> float:
    return group_memory_mb(*groups)["rss"]


class PeakRSS:
    """Samples a server's memory every 0.25 s in a thread; ``peak`` is the largest sum."""

    def __init__(self, groups: list[int]):
        self.groups, self.peak = groups, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.25):
            self.peak = max(self.peak, group_rss_mb(*self.groups))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_measured(argv: list, env: dict, log: Path) -> tuple[float, float]:
    """Run a command to its end: (seconds, its peak RSS in MB). Raises on failure.

    The peak is the kernel's high-water mark of the command's own memory (``VmHWM``), read
    until it exits. Not wait4's ``ru_maxrss``: Linux carries the parent's resident set at
    the fork into the child's maximum, so a 20 MB command started by this 900 MB process
    reported 900 MB (the 618-885 MB "command peak RSS" of earlier runs)."""
    started = time.perf_counter()
    peak_kb = 0
    with log.open("ab") as out:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            while process.poll() is None:
                peak_kb = max(peak_kb, high_water_kb(process.pid))
                time.sleep(0.05)
        except BaseException:
            process.kill()
            process.wait()
            raise
    seconds = time.perf_counter() - started
    if process.returncode:
        raise SystemExit(f"{argv[2:4]} failed ({process.returncode}); see {log}")
    return seconds, peak_kb / 1024


def high_water_kb(pid: int) -> int:
    """The largest resident set the process has had since it started its program (kB)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass  # it ended while we looked
    return 0


def wait_for(check, what: str, timeout: float = 1800, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise SystemExit(f"{what}: not done within {timeout:.0f} s")


# --- Label Studio ------------------------------------------------------------------------


def ls_installed() -> bool:
    if not LS_PYTHON.exists():
        return False
    probe = subprocess.run(
        [LS_PYTHON, "-c", "import gunicorn, label_studio; print(label_studio.__version__)"],
        capture_output=True,
        text=True,
    )
    return probe.returncode == 0 and probe.stdout.strip() == LS_VERSION


def install_label_studio() -> None:
    """Label Studio and gunicorn from PyPI into bench/.labelstudio/venv (minutes, once)."""
    print(f"Installing Label Studio {LS_VERSION} into {LS_VENV} (once) …", flush=True)
    shutil.rmtree(LS_VENV, ignore_errors=True)
    # The base interpreter of the project's virtual environment makes the new one.
    python = getattr(sys, "_base_executable", sys.executable)
    steps = [
        [python, "-m", "venv", LS_VENV],
        [LS_PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-q", *LS_REQUIREMENTS],
    ]
    for step in steps:
        if subprocess.run(step).returncode:
            raise SystemExit(
                f"Could not install Label Studio ({' '.join(map(str, step))} failed). "
                "It needs PyPI and `python3 -m venv`. Nothing was started."
            )
    if not ls_installed():
        raise SystemExit("Label Studio installed but does not import. Nothing was started.")


class LabelStudio:
    """Label Studio under gunicorn on ``port``, its data under ``base``."""

    def __init__(self, base: Path, port: int):
        self.base, self.port = base, port
        self.url = f"http://127.0.0.1:{port}"
        site = subprocess.run(
            [
                LS_PYTHON,
                "-c",
                "import label_studio, os; print(os.path.dirname(label_studio.__file__))",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        self.package = Path(site.stdout.strip())
        server = DATABASE_URL.rsplit("/", 1)[0]  # postgres://user@host:port
        user_host = server.split("://", 1)[1]
        user, _, host_port = user_host.rpartition("@")
        host, _, port_text = host_port.partition(":")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(base),
            "LANG": "C.UTF-8",
            "DJANGO_DB": "default",
            "POSTGRE_NAME": LS_DATABASE,
            "POSTGRE_USER": user.split(":")[0] or "postgres",
            "POSTGRE_PASSWORD": user.partition(":")[2],
            "POSTGRE_HOST": host or "localhost",
            "POSTGRE_PORT": port_text or "5432",
            "LABEL_STUDIO_BASE_DATA_DIR": str(base / "data"),
            "DJANGO_SETTINGS_MODULE": "core.settings.label_studio",
            "SECRET_KEY": annotation_load.SECRET_KEY,
            "DEBUG": "false",
            "LOG_LEVEL": "WARNING",
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",  # its default reports errors to sentry.io
            "FRONTEND_SENTRY_DSN": "",
        }
        self.server: Child | None = None
        self.token = secrets.token_hex(20)  # its tokens are at most 40 characters

    def create_database(self) -> None:
        import psycopg

        with psycopg.connect(DATABASE_URL.rsplit("/", 1)[0] + "/postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{LS_DATABASE}" WITH (FORCE)')
            c.execute(f'CREATE DATABASE "{LS_DATABASE}"')

    def init(self) -> None:
        """Migrations, then the first user with a legacy token and its organization."""
        argv = [LS_VENV / "bin" / "label-studio", "init", "--username", LS_USER]
        argv += ["--password", LS_PASSWORD, "--user-token", self.token]
        argv += ["--enable-legacy-api-token", "--quiet", "--no-browser"]
        with (self.base / "labelstudio-init.log").open("wb") as log:
            done = subprocess.run(argv, cwd=self.base, env=self.env, stdout=log, stderr=log)
        if done.returncode:
            raise SystemExit(f"label-studio init failed; see {self.base}/labelstudio-init.log")

    def start(self) -> None:
        self.server = Child(
            "label-studio",
            [
                LS_PYTHON,
                "-m",
                "gunicorn",
                "core.wsgi:application",
                "--chdir",
                self.package,
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(WORKERS),
                "--preload",  # as uwsgi, its production server, loads the app before forking
                "--timeout",
                "1800",  # its imports and exports run inside the request
                "--log-level",
                "warning",
            ],
            env=self.env,
            log=self.base / "labelstudio.log",
            grace=30,
        )
        import httpx

        def up():
            if not self.server.running():
                raise SystemExit("Label Studio did not start:\n" + self.server.tail())
            try:
                return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, "Label Studio start", timeout=180, every=0.5)

    def client(self, token: str | None = None):
        import httpx

        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Token {token or self.token}"},
            timeout=1800,
        )

    def annotator_tokens(self, k: int) -> list[str]:
        """``k`` annotators in the organization, each with its own legacy token."""
        script = (
            "import django, json, sys; django.setup()\n"
            "from organizations.models import Organization\n"
            "from rest_framework.authtoken.models import Token\n"
            "from users.models import User\n"
            "org = Organization.objects.first(); tokens = []\n"
            "for i in range(int(sys.argv[1])):\n"
            "    user, made = User.objects.get_or_create(email=f'annotator{i}@bench.test',"
            " defaults={'username': f'annotator{i}'})\n"
            "    if made: org.add_user(user); user.active_organization = org;"
            " user.save(update_fields=['active_organization'])\n"
            "    tokens.append(Token.objects.get_or_create(user=user)[0].key)\n"
            "print(json.dumps(tokens))\n"
        )
        out = subprocess.run(
            [LS_PYTHON, "-c", script, str(k)],
            cwd=self.package,
            env={**self.env, "PYTHONPATH": str(self.package)},
            capture_output=True,
            text=True,
        )
        if out.returncode:
            raise SystemExit(f"Label Studio annotators: {out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def new_project(self, title: str, maximum_annotations: int = 1) -> int:
        with self.client() as c:
            made = c.post(
                "/api/projects",
                json={
                    "title": title,
                    "label_config": LS_LABEL_CONFIG,
                    "maximum_annotations": maximum_annotations,
                },
            )
        check(made.status_code == 201, f"Label Studio project: {made.status_code} {made.text}")
        return made.json()["id"]

    def import_tasks(self, project: int, body: bytes, n: int, annotated: bool = False) -> float:
        with self.client() as c:
            started = time.perf_counter()
            done = c.post(
                f"/api/projects/{project}/import",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            seconds = time.perf_counter() - started
            check(done.status_code == 201, f"LS import: {done.status_code} {done.text[:500]}")
            report = done.json()
            check(report["task_count"] == n, f"LS imported {report['task_count']} of {n}")
            if annotated:
                check(report["annotation_count"] == n, f"LS annotations: {report}")
            counted = c.get(f"/api/projects/{project}").json()["task_number"]
            check(counted == n, f"LS project holds {counted} tasks, not {n}")
        return seconds

    def export_sync(self, project: int, n: int) -> float:
        with self.client() as c:
            started = time.perf_counter()
            got = c.get(f"/api/projects/{project}/export", params={"exportType": "JSON"})
            seconds = time.perf_counter() - started
        check(got.status_code == 200, f"LS export: {got.status_code} {got.text[:300]}")
        tasks = got.json()
        check(len(tasks) == n and all(t["annotations"] for t in tasks), "LS export count")
        return seconds

    def export_snapshot(self, project: int, n: int) -> float:
        with self.client() as c:
            started = time.perf_counter()
            made = c.post(f"/api/projects/{project}/exports", json={})
            check(made.status_code == 201, f"LS snapshot: {made.status_code} {made.text[:300]}")
            snapshot = made.json()["id"]

            def finished():
                state = c.get(f"/api/projects/{project}/exports/{snapshot}").json()["status"]
                check(state != "failed", "LS snapshot failed")
                return state == "completed"

            wait_for(finished, "LS snapshot", every=0.1)
            got = c.get(
                f"/api/projects/{project}/exports/{snapshot}/download",
                params={"exportType": "JSON"},
            )
            seconds = time.perf_counter() - started
        check(got.status_code == 200, f"LS snapshot download: {got.status_code}")
        check(len(got.json()) == n, "LS snapshot count")
        return seconds

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


async def ls_annotator(port, project, token, until, stats, think):
    """Label Studio's labeling loop: next task, think, create the annotation, next task."""
    request, timed = annotation_load.request, annotation_load.timed
    headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
    next_task = f"/api/projects/{project}/next"
    status, payload = await timed(stats["next_ms"], request(port, "GET", next_task, headers))
    if status != 200:
        stats["errors"].append(f"GET next {status}")
        return
    task = json.loads(payload)

    async def submit_and_next(task_id: int, body: bytes):
        status, payload = await request(
            port, "POST", f"/api/tasks/{task_id}/annotations", headers, body, "application/json"
        )
        if status != 201:
            return f"POST annotation {status}", payload
        return await request(port, "GET", next_task, headers)

    while time.monotonic() < until:
        await asyncio.sleep(random.uniform(*think))  # noqa: S311 (think time)
        body = {"result": ls_result(random.choice(["left", "right"])), "lead_time": 0.9}  # noqa: S311
        status, payload = await timed(
            stats["submit_ms"], submit_and_next(task["id"], json.dumps(body).encode())
        )
        if isinstance(status, str):
            stats["errors"].append(status)
            return
        if status == 404:
            return  # nothing left
        if status != 200:
            stats["errors"].append(f"GET next {status}")
            return
        task = json.loads(payload)


# --- Chosen ------------------------------------------------------------------------------


class Chosen:
    """Chosen under gunicorn (production settings) with a Celery worker, as compose runs
    them; an organization with an API token."""

    def __init__(self, base: Path, port: int):
        self.base, self.port = base, port
        self.url = f"http://127.0.0.1:{port}"
        self.servers: list[Child] = []

    def start(self) -> None:
        os.environ.update(
            DJANGO_MEDIA_ROOT=str(self.base / "media"),
            CHOSEN_API_TOKEN_RATE="1000000/min",
            CHOSEN_API_USER_RATE="1000000/min",
        )
        annotation_load.setup_django()
        from django_scopes import scopes_disabled

        from tasks.models import Organization
        from tasks.services import create_api_token

        with scopes_disabled():
            self.org, _ = Organization.objects.get_or_create(
                slug="vs-label-studio", defaults={"name": "vs Label Studio"}
            )
            _, self.token = create_api_token(organization=self.org, name="vs label studio")
        # The two workers of docker compose: jobs (2 processes) and chat turns (16 threads).
        celery = [sys.executable, "-m", "celery", "-A", "project", "worker", "--loglevel=WARNING"]
        for name, options in (
            ("worker", ["-Q", "celery", "--concurrency=2"]),
            ("chat-worker", ["-Q", "chat", "--pool", "threads", "--concurrency=16"]),
        ):
            argv = [*celery, *options, "-n", f"vs-{name}-{time.time_ns()}@%h"]
            self.servers.append(
                Child(name, argv, env=annotation_load.server_env(), log=self.base / f"{name}.log")
            )
        self.servers.append(
            annotation_load.start_gunicorn(self.port, WORKERS, log=self.base / "gunicorn.log")
        )

    def groups(self) -> list[int]:
        return [s.process.pid for s in self.servers]

    def client(self):
        import httpx

        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=1800
        )

    def new_project(self, name: str, per_item: int = 2):
        from django_scopes import scopes_disabled

        from tasks.models import Project
        from tasks.schema import default_questions

        with scopes_disabled():
            return Project.objects.create(
                organization=self.org,
                name=f"{name} {time.time_ns()}",
                status="active",
                questions=default_questions("pairwise"),
                candidate_fields=["response_a", "response_b"],
                annotations_per_item=per_item,
            )

    def prompts_in(self, project) -> int:
        from django_scopes import scopes_disabled

        from tasks.models import Item

        with scopes_disabled():
            return Item.objects.filter(project=project).count()

    def import_command(self, path: Path, n: int) -> tuple[float, float]:
        project = self.new_project("import command")
        argv = [sys.executable, "manage.py", "import_prompts", f"{self.org.slug}/{project.pk}"]
        seconds, rss = run_measured(
            [*argv, str(path)], {**os.environ, "DJANGO_ENV": ""}, self.base / "command.log"
        )
        check(self.prompts_in(project) == n, "Chosen command: item count")
        return seconds, rss

    def import_api(self, path: Path, n: int) -> float:
        project = self.new_project("import api")
        with self.client() as c, path.open("rb") as upload:
            started = time.perf_counter()
            sent = c.post(
                f"/api/v1/projects/{project.pk}/imports/",
                files={"file": (path.name, upload, "application/x-ndjson")},
            )
            check(sent.status_code in (201, 202), f"Chosen import: {sent.status_code} {sent.text}")
            job = sent.json()

            def finished():
                state = c.get(f"/api/v1/imports/{job['id']}/").json()
                check(state["status"] != "failed", f"Chosen import job failed: {state}")
                return state["status"] == "succeeded"

            if sent.status_code == 202:
                wait_for(finished, "Chosen import job", every=0.1)
            seconds = time.perf_counter() - started
        check(self.prompts_in(project) == n, "Chosen API import: item count")
        return seconds

    def fill_judged(self, path: Path, n: int):
        """A project of the file's prompts, each item judged once (SQL): what is exported."""
        from django.contrib.auth import get_user_model
        from django.db import connection
        from django_scopes import scope

        from tasks.importers.prompts import import_prompts

        project = self.new_project("export", per_item=1)
        with scope(organization=self.org), path.open("rb") as stream:
            import_prompts(project=project, files=[(path.name, stream)])
        person, _ = get_user_model().objects.get_or_create(username="vs-annotator")
        params = {"project": project.pk, "person": person.pk}
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO annotation_assignment (organization_id, project_id, item_id, "
                "annotator_id, status, display_order, skip_reason, created_at, expires_at, "
                "finished_at) SELECT i.organization_id, i.project_id, i.id, %(person)s, "
                "'submitted', jsonb_build_array(a.candidate_id, b.candidate_id), '', now(), "
                "now(), now() FROM tasks_item i JOIN tasks_itemcandidate a ON a.item_id = i.id "
                "AND a.position = 0 JOIN tasks_itemcandidate b ON b.item_id = i.id AND "
                "b.position = 1 WHERE i.project_id = %(project)s",
                params,
            )
            cursor.execute(
                "UPDATE tasks_item SET assignment_count = 1 WHERE project_id = %(project)s",
                params,
            )
            cursor.execute(
                "INSERT INTO annotation_judgment (organization_id, project_id, item_id, "
                "assignment_id, annotator_id, outcome, chosen_id, rejected_id, label, ranking, "
                "answers, rubric_scores, reasoning, time_spent_ms, version, created_at, "
                "updated_at) SELECT a.organization_id, a.project_id, a.item_id, a.id, "
                "a.annotator_id, 'preferred', (a.display_order->>0)::int, "
                "(a.display_order->>1)::int, 'Response A is better', '[]', "
                "'{\"preference\": \"Response A is better\"}', '{}', 'Clearer.', 30000, 1, "
                "now(), now() FROM annotation_assignment a WHERE a.project_id = %(project)s",
                params,
            )
            cursor.execute("ANALYZE")
        return project

    def export_trl(self, project, n: int) -> float:
        with self.client() as c:
            started = time.perf_counter()
            made = c.post(f"/api/v1/projects/{project.pk}/exports/", json={"format": "trl"})
            check(made.status_code == 202, f"Chosen export: {made.status_code} {made.text}")
            export = made.json()["id"]

            def finished():
                state = c.get(f"/api/v1/exports/{export}/").json()
                check(state["status"] != "failed", f"Chosen export failed: {state}")
                return state if state["status"] == "succeeded" else None

            state = wait_for(finished, "Chosen export", every=0.1)
            rows = 0
            for file in state["files"]:
                got = c.get(f"/api/v1/exports/{export}/files/{file['name']}")
                check(got.status_code == 200, f"Chosen download: {got.status_code}")
                if file["name"].removesuffix(".jsonl") in state["counts"]:  # train, validation
                    rows += got.content.count(b"\n")
            seconds = time.perf_counter() - started
        check(rows == n, f"Chosen exported {rows} pairs of {n} ({state['counts']})")
        return seconds

    def annotate_project(self, path: Path, k: int) -> tuple[int, list[str]]:
        """annotation_load's project and annotators' sessions, with this file's prompts."""
        from django_scopes import scope, scopes_disabled

        from tasks.importers.prompts import import_prompts
        from tasks.models import Project

        project_id, keys = annotation_load.fill(0, k)
        with scopes_disabled():
            project = Project.objects.get(pk=project_id)
        project.candidate_fields = ["response_a", "response_b"]
        project.save(update_fields=["candidate_fields"])
        with scope(organization=project.organization), path.open("rb") as stream:
            import_prompts(project=project, files=[(path.name, stream)])
        return project_id, keys

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()


# --- the run -----------------------------------------------------------------------------


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"check failed: {what}")


def percentile(values: list[float], q: int) -> float:
    if not values:
        return float("inf")
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def interleaved(rep: int, ls_step, chosen_step) -> None:
    for step in (ls_step, chosen_step) if rep % 2 == 0 else (chosen_step, ls_step):
        step()


def run(args, base: Path, ls: LabelStudio, chosen: Chosen, results: dict) -> None:
    data = base / "rows"
    data.mkdir()
    ls_peak, chosen_peak = PeakRSS([ls.server.process.pid]), PeakRSS(chosen.groups())
    try:
        for rep in range(args.repetitions):
            print(f"repetition {rep + 1} of {args.repetitions}", flush=True)
            if "import" in args.sections:
                for n in args.import_sizes:
                    path = data / f"import-{n}-{rep}.jsonl"
                    write_rows(path, n, seed=rep * 1000 + 1)
                    body = ls_tasks(path)

                    def ls_step(n=n, body=body, rep=rep):
                        project = ls.new_project(f"import {n} {rep}")
                        results.setdefault(("import", n, "ls"), []).append(
                            ls.import_tasks(project, body, n)
                        )

                    def chosen_step(n=n, path=path):
                        seconds, rss = chosen.import_command(path, n)
                        results.setdefault(("import", n, "command"), []).append(seconds)
                        results.setdefault(("import", n, "command_rss"), []).append(rss)
                        results.setdefault(("import", n, "api"), []).append(
                            chosen.import_api(path, n)
                        )

                    interleaved(rep, ls_step, chosen_step)
                    print(f"  import {n:,}: {summary(results, 'import', n)}", flush=True)
            if "export" in args.sections:
                for n in args.export_sizes:
                    path = data / f"export-{n}-{rep}.jsonl"
                    write_rows(path, n, seed=rep * 1000 + 2)
                    ls_project = ls.new_project(f"export {n} {rep}")
                    ls.import_tasks(ls_project, ls_tasks(path, annotated=True), n, annotated=True)
                    chosen_project = chosen.fill_judged(path, n)

                    def ls_step(n=n, project=ls_project):
                        results.setdefault(("export", n, "sync"), []).append(
                            ls.export_sync(project, n)
                        )
                        results.setdefault(("export", n, "snapshot"), []).append(
                            ls.export_snapshot(project, n)
                        )

                    def chosen_step(n=n, project=chosen_project):
                        results.setdefault(("export", n, "trl"), []).append(
                            chosen.export_trl(project, n)
                        )

                    interleaved(rep, ls_step, chosen_step)
                    print(f"  export {n:,}: {summary(results, 'export', n)}", flush=True)
            if "annotate" in args.sections:
                path = data / f"annotate-{rep}.jsonl"
                write_rows(path, args.items, seed=rep * 1000 + 3)
                body = ls_tasks(path)
                tokens = ls.annotator_tokens(max(args.annotators))
                for k in args.annotators:

                    def ls_step(k=k, body=body, rep=rep, tokens=tokens):
                        project = ls.new_project(f"annotate {k} {rep}", maximum_annotations=2)
                        ls.import_tasks(project, body, args.items)
                        stats = load(
                            lambda until, stats: [
                                ls_annotator(ls.port, project, t, until, stats, args.think)
                                for t in tokens[:k]
                            ],
                            args.seconds,
                        )
                        results.setdefault(("annotate", k, "ls"), []).append(stats)

                    def chosen_step(k=k, path=path):
                        project, keys = chosen.annotate_project(path, k)
                        stats = load(
                            lambda until, stats: [
                                annotation_load.annotator(
                                    chosen.port, project, key, until, stats, args.think
                                )
                                for key in keys
                            ],
                            args.seconds,
                        )
                        results.setdefault(("annotate", k, "chosen"), []).append(stats)

                    interleaved(rep, ls_step, chosen_step)
                    print(f"  {k} annotators: {summary(results, 'annotate', k)}", flush=True)
    finally:
        results["peak_mb"] = {"ls": ls_peak.stop(), "chosen": chosen_peak.stop()}


def load(annotators, seconds: float) -> dict:
    stats = {"next_ms": [], "submit_ms": [], "errors": []}
    until = time.monotonic() + seconds

    async def everyone():
        await asyncio.gather(*annotators(until, stats))

    asyncio.run(everyone())
    return stats


def summary(results: dict, section: str, size: int) -> str:
    parts = []
    for (s, n, who), values in results.items():
        if s == section and n == size:
            if section == "annotate":
                p95s = [percentile(v["submit_ms"], 95) for v in values]
                parts.append(f"{who} p95 {p95s[-1]:.0f} ms, {len(values[-1]['errors'])} errors")
            elif who.endswith("rss"):
                parts.append(f"{who} {values[-1]:.0f} MB")
            else:
                parts.append(f"{who} {values[-1]:.2f} s")
    return "; ".join(parts)


# --- the table ---------------------------------------------------------------------------


def spread(values: list[float], unit: str = "", scale: float = 1.0, digits: int = 0) -> str:
    """Median and range of several runs (or the one value)."""
    values = [v * scale for v in values]
    med = statistics.median(values)
    text = f"{med:,.{digits}f}{unit}"
    if len(values) > 1:
        text += f" ({min(values):,.{digits}f}–{max(values):,.{digits}f})"
    return text


def table(args, results: dict, idle: dict) -> int:
    rows = []  # work, LS, Chosen, ratio, target, verdict

    def verdict(ok: bool | None) -> str:
        return "—" if ok is None else ("yes" if ok else "NO")

    def rates(work: str, n: int, ls_seconds, seconds, times: int, floor: int):
        """A throughput row: items/s of each side, Chosen's over LS's, and the target of
        ``times`` LS's rate and at least ``floor`` items/s."""
        ls_rates, chosen_rates = [n / s for s in ls_seconds], [n / s for s in seconds]
        ratio = statistics.median(chosen_rates) / statistics.median(ls_rates)
        ok = ratio >= times and statistics.median(chosen_rates) >= floor
        target = f">={times}x, >={floor:,}/s"
        rows.append(
            (work, spread(ls_rates), spread(chosen_rates), f"{ratio:.1f}x", target, verdict(ok))
        )

    for n in args.import_sizes if "import" in args.sections else []:
        for how, name in (("command", "command"), ("api", "API job")):
            work = f"import {n:,} prompts ({name}), /s"
            rates(work, n, results[("import", n, "ls")], results[("import", n, how)], 5, 20_000)
        rss = results[("import", n, "command_rss")]
        rows.append(
            (
                f"import {n:,}: command peak RSS, MB",
                "",
                spread(rss),
                "",
                "< 300 MB",
                verdict(statistics.median(rss) < 300),
            )
        )
    for n in args.export_sizes if "export" in args.sections else []:
        for how in ("sync", "snapshot"):
            work = f"export {n:,} pairs (LS {how} / TRL job), /s"
            rates(work, n, results[("export", n, how)], results[("export", n, "trl")], 50, 50_000)
    for k in args.annotators if "annotate" in args.sections else []:
        ls_runs, chosen_runs = results[("annotate", k, "ls")], results[("annotate", k, "chosen")]
        for q in (50, 95, 99):
            ls_values = [percentile(r["submit_ms"], q) for r in ls_runs]
            values = [percentile(r["submit_ms"], q) for r in chosen_runs]
            target, ok = "", None
            if k >= 200 and q in (95, 99):
                limit = 50 if q == 95 else 100
                target, ok = f"< {limit} ms", statistics.median(values) < limit
            if k == 50 and q == 95:
                target = "<= LS p95 / 3"
                ok = statistics.median(values) <= statistics.median(ls_values) / 3
            rows.append(
                (
                    f"K={k} submit+next p{q}, ms",
                    spread(ls_values, digits=1),
                    spread(values, digits=1),
                    f"{statistics.median(ls_values) / statistics.median(values):.1f}x",
                    target,
                    verdict(ok),
                )
            )
        ls_errors = [len(r["errors"]) for r in ls_runs]
        errors = [len(r["errors"]) for r in chosen_runs]
        rows.append(
            (
                f"K={k} errors / judgments",
                f"{sum(ls_errors)} / {sum(len(r['submit_ms']) for r in ls_runs):,}",
                f"{sum(errors)} / {sum(len(r['submit_ms']) for r in chosen_runs):,}",
                "",
                "0 errors" if k >= 200 else "",
                verdict(sum(errors) == 0) if k >= 200 else "—",
            )
        )
    if "memory" in args.sections:
        ls_idle, chosen_idle = idle["ls"], idle["chosen"]
        rows.append(
            (
                "idle memory (web + worker), PSS, MB",
                f"{ls_idle['pss']:.0f}",
                f"{chosen_idle['pss']:.0f}",
                f"{ls_idle['pss'] / chosen_idle['pss']:.1f}x",
                "< half of LS",
                verdict(chosen_idle["pss"] < ls_idle["pss"] / 2),
            )
        )
        rows.append(
            (
                "idle memory, sum of RSS (shared pages counted per process), MB",
                f"{ls_idle['rss']:.0f}",
                f"{chosen_idle['rss']:.0f}",
                f"{ls_idle['rss'] / chosen_idle['rss']:.1f}x",
                "",
                "—",
            )
        )
        peak = results.get("peak_mb", {})
        if peak:
            rows.append(
                (
                    "peak memory during the run, MB",
                    f"{peak['ls']:.0f}",
                    f"{peak['chosen']:.0f}",
                    f"{peak['ls'] / max(peak['chosen'], 1):.1f}x",
                    "",
                    "—",
                )
            )
    print(
        f"\nChosen vs Label Studio {LS_VERSION}: gunicorn with {WORKERS} sync workers each, "
        f"PostgreSQL 15, {os.cpu_count()} cores shared by servers and clients; "
        f"{args.repetitions} repetition(s), median (min–max); ratio = how many times "
        f"better Chosen is; annotators think {args.think[0]:g}-{args.think[1]:g} s for "
        f"{args.seconds:g} s over {args.items:,} items"
    )
    header = ("work", "Label Studio", "Chosen", "ratio", "target", "verdict")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(6)]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0 if all(r[5] != "NO" for r in rows) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=SECTIONS)
    parser.add_argument("--import-sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--export-sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--annotators", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--seconds", type=float, default=60, help="per annotator run")
    parser.add_argument("--items", type=int, default=10_000, help="items to annotate")
    parser.add_argument("--think", type=float, nargs=2, default=[5.0, 15.0])
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2k, K=10 for 15 s, 1 repetition")
    parser.add_argument("--no-install", action="store_true", help="never install Label Studio")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if args.quick:
        args.import_sizes, args.export_sizes, args.annotators = [2000], [2000], [10]
        args.seconds, args.repetitions, args.items = 15, 1, 2000

    # Everything is checked before anything starts.
    preflight.require_modules("httpx", "psycopg", "redis", "gunicorn", "celery")
    preflight.require_postgres(DATABASE_URL)
    preflight.require_redis(REDIS_URL)
    if not ls_installed():
        if args.no_install:
            raise SystemExit(
                f"Label Studio {LS_VERSION} is not installed in {LS_VENV} (run without "
                "--no-install to install it from PyPI). Nothing was started."
            )
        install_label_studio()
    preflight.stop_on_signals()

    prepare_database(["collectstatic", "--noinput"])
    base = Path(tempfile.mkdtemp(prefix="vs-label-studio-"))
    ls = LabelStudio(base, preflight.free_port())
    chosen = Chosen(base, preflight.free_port())
    results, idle = {}, {}
    try:
        print(f"Label Studio: a fresh database {LS_DATABASE}, migrations …", flush=True)
        ls.create_database()
        ls.init()
        ls.start()
        chosen.start()
        time.sleep(5)  # both settle (workers forked, connections made)
        idle = {
            "ls": group_memory_mb(ls.server.process.pid),
            "chosen": group_memory_mb(*chosen.groups()),
        }
        print(
            "idle memory (PSS / RSS sum): "
            f"LS {idle['ls']['pss']:.0f} / {idle['ls']['rss']:.0f} MB, "
            f"Chosen {idle['chosen']['pss']:.0f} / {idle['chosen']['rss']:.0f} MB",
            flush=True,
        )
        run(args, base, ls, chosen, results)
        return table(args, results, idle)
    finally:
        chosen.stop()
        ls.stop()
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
