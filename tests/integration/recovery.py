"""What the recovery drills share (tests/integration/test_worker_recovery.py and
bench/worker_recovery.py): Celery worker and beat processes with settings of their own, a
private Redis that can be stopped and started again, and a project with many judgments
written by SQL (as bench/qc_report.py fills its projects)."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import kombu.pools
from django.db import connection
from django_scopes import scopes_disabled

from project.celery import app as celery_app
from tasks.models import Project
from tasks.schema import default_questions
from tests.integration.conftest import ROOT
from tests.integration.conftest import Worker as BaseWorker
from tests.llm_server import free_port

# The workers' and beat's settings in the suite: production's, with the sweeper's periods
# cut to seconds (see that module).
FAST_SETTINGS = "tests.integration.recovery_settings"


def wait_until(predicate, timeout: float, what: str, poll: float = 0.05):
    """``predicate()``'s first true value, polled until ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(poll)
    return value


class Worker(BaseWorker):
    """``celery worker`` in its own process (tests/integration/conftest.py's), noted in
    ``started`` before it is waited for, so that one slow to start is still stopped, and
    given three minutes to start on a busy machine."""

    def __init__(self, log_path: Path, env: dict, started: list, concurrency: int = 1):
        self.log_path = log_path
        self.log = log_path.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "project", "worker", "--pool=prefork"]
            + [f"--concurrency={concurrency}", "--without-mingle", "--without-gossip"]
            + ["--loglevel=INFO"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # SIGKILL reaches the pool with the group
        )
        started.append(self)
        wait_until(lambda: "ready." in self.output() or self.process.poll(), 180, "a worker")
        assert self.process.poll() is None, self.output()


def handled(worker: Worker, message_id: str) -> bool:
    """The worker received message ``message_id`` and acknowledged it: neither the queue
    nor the broker's unacknowledged messages hold it any more. (What the pool's processes
    log does not reach the worker's output, so their "succeeded" lines cannot be waited
    for.)"""
    if f"[{message_id}] received" not in worker.output():
        return False
    with celery_app.connection_for_write() as broker:
        client = broker.default_channel.client
        held = client.lrange("celery", 0, -1) + client.hvals("unacked")
    return not any(message_id.encode() in message for message in held)


class Beat:
    """``celery beat`` in its own process: sends beat's jobs (the sweeper among them). Not
    waited for: it starts while a worker does."""

    def __init__(self, log_path: Path, env: dict):
        self.log_path = log_path
        self.log = log_path.open("a")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "project",
                "beat",
                "--schedule",
                str(log_path.with_suffix(".schedule")),
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.log.close()


class PrivateRedis:
    """A redis-server of the test's own on a free port, keeping nothing on disk (as this
    machine's Redis runs): stopping it loses what it held, like an outage."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        folder.mkdir(parents=True, exist_ok=True)
        self.process = None
        self.start()

    def start(self) -> None:
        assert shutil.which("redis-server"), "redis-server is on this machine's PATH"
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no", "--dir", str(self.folder)],
            stdout=(self.folder / "redis.log").open("a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self.answers, 10, "the private Redis to answer")

    def answers(self) -> bool:
        ping = subprocess.run(
            ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
        )
        return ping.stdout.strip() == "PONG"

    def stop(self) -> None:
        """Stopped outright (SIGKILL): nothing is flushed or said goodbye to."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@contextlib.contextmanager
def broker_at(url: str):
    """This process sends its jobs to the broker at ``url`` (as a web server configured
    with it would), then back to the settings' broker."""
    conf = celery_app.conf
    before = conf.broker_url

    def reset() -> None:
        # kombu keeps one producer pool per connection in a process-wide registry: closing
        # ours without clearing it leaves a closed pool for the next sender to find
        # ("Acquire on closed pool" in every later test that sends a job).
        celery_app.pool.force_close_all()
        kombu.pools.reset()
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    reset()
    conf.broker_url = url
    try:
        yield
    finally:
        reset()
        conf.broker_url = before


def process_env(settings, redis_url: str, settings_module: str = FAST_SETTINGS) -> dict:
    """The environment of a worker or beat on the test database and ``redis_url``."""
    db = connection.settings_dict
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings_module,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": redis_url,
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        # The pool's processes end with os._exit: what they logged must not sit in a buffer.
        "PYTHONUNBUFFERED": "1",
    }


class Processes:
    """Workers and beat started for one test; all stopped at its end."""

    def __init__(self, folder: Path, env: dict):
        self.folder, self.env, self.started = folder, env, []

    def worker(self, **kwargs) -> Worker:
        log = self.folder / f"worker-{len(self.started)}.log"
        return Worker(log, self.env, self.started, **kwargs)

    def beat(self) -> Beat:
        beat = Beat(self.folder / f"beat-{len(self.started)}.log", self.env)
        self.started.append(beat)
        return beat

    def stop(self) -> None:
        for process in self.started:
            if process.process.poll() is None:
                process.stop()
            elif not process.log.closed:
                process.log.close()


def judged_project(organization, judgments: int) -> Project:
    """A pairwise project with ``judgments`` / 2 items of two candidates, each judged by
    two annotators, every judgment a preference (so an export has one pair per judgment)."""
    from django.contrib.auth import get_user_model

    with scopes_disabled():
        project = Project.objects.create(
            organization=organization,
            name=f"{judgments} judgments",
            questions=default_questions("pairwise"),
        )
        people = [
            get_user_model().objects.create(username=f"judge{project.pk}-{n}") for n in range(4)
        ]
    params = {
        "org": organization.pk,
        "project": project.pk,
        "n": judgments // 2,
        "people": [p.pk for p in people],
        "k": len(people),
    }
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tasks_prompt (organization_id, project_id, external_id, text, metadata, "
            "source, content_hash, created_at) SELECT %(org)s, %(project)s, 'p' || g, "
            "'Prompt ' || g || ' about topic ' || (g %% 97), '{}', 'drill', md5(g::text), now() "
            "FROM generate_series(1, %(n)s) g",
            params,
        )
        cursor.execute(
            "INSERT INTO tasks_candidate (organization_id, prompt_id, text, source, source_key, "
            "model, parameters, finish_reason, content_hash, created_at) SELECT "
            "p.organization_id, p.id, 'Answer ' || v.k || ' to ' || p.external_id || "
            "' with some more words in it', 'imported', 'response_' || v.k, '', '{}', 'stop', "
            "md5(p.id || v.k), now() FROM tasks_prompt p CROSS JOIN (VALUES ('a'), ('b')) v(k) "
            "WHERE p.project_id = %(project)s",
            params,
        )
        cursor.execute(
            "INSERT INTO tasks_item (organization_id, project_id, prompt_id, mode, candidate_key, "
            "target_annotations, assignment_count, random_order, created_at) SELECT %(org)s, "
            "%(project)s, c.prompt_id, 'pairwise', min(c.id) || '-' || max(c.id), 2, 2, 0, now() "
            "FROM tasks_candidate c JOIN tasks_prompt p ON p.id = c.prompt_id "
            "WHERE p.project_id = %(project)s GROUP BY c.prompt_id",
            params,
        )
        cursor.execute(
            "INSERT INTO annotation_assignment (organization_id, project_id, item_id, "
            "annotator_id, status, display_order, skip_reason, created_at, expires_at, "
            "finished_at) SELECT %(org)s, %(project)s, i.id, "
            "(%(people)s::int[])[1 + ((i.id + s) %% %(k)s)], 'submitted', "
            "jsonb_build_array(split_part(i.candidate_key, '-', 1)::int, "
            "split_part(i.candidate_key, '-', 2)::int), '', now(), now(), now() "
            "FROM tasks_item i CROSS JOIN (VALUES (0), (1)) v(s) "
            "WHERE i.project_id = %(project)s",
            params,
        )
        cursor.execute(
            "INSERT INTO annotation_judgment (organization_id, project_id, item_id, "
            "assignment_id, annotator_id, outcome, chosen_id, rejected_id, label, ranking, "
            "answers, rubric_scores, reasoning, time_spent_ms, version, created_at, updated_at) "
            "SELECT a.organization_id, a.project_id, a.item_id, a.id, a.annotator_id, "
            "'preferred', (a.display_order->>0)::int, (a.display_order->>1)::int, "
            "'A is better', '[]', '{}', '{}', 'because', 30000, 1, now(), now() "
            "FROM annotation_assignment a WHERE a.project_id = %(project)s",
            params,
        )
        # Statistics for the planner: without them the QC report's queries on tables just
        # filled in bulk take minutes instead of seconds.
        cursor.execute(
            "ANALYZE tasks_prompt, tasks_candidate, tasks_item, annotation_assignment, "
            "annotation_judgment"
        )
    return project
