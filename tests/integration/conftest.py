"""A real part for integration tests: Celery worker processes on the real Redis broker."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from project.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]


class Worker:
    """``celery worker`` in its own process, on the test database."""

    def __init__(
        self,
        log_path: Path,
        env: dict,
        concurrency: int = 1,
        pool: str = "prefork",
        queues: str = "celery,chat",
    ):
        """``queues``: both by default (jobs and chat turns), as a worker started without
        ``-Q``; ``pool="threads", queues="chat"`` is the deployments' chat worker."""
        self.log_path = log_path
        self.log = log_path.open("a")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "project",
                "worker",
                f"--pool={pool}",
                f"--concurrency={concurrency}",
                f"--queues={queues}",
                "--without-mingle",
                "--without-gossip",
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # SIGKILL reaches the pool children with the group
        )
        deadline = time.monotonic() + 60
        while "ready." not in self.log_path.read_text():
            assert self.process.poll() is None and time.monotonic() < deadline, self.output()
            time.sleep(0.2)

    def output(self) -> str:
        return self.log_path.read_text()

    def kill(self) -> None:
        """SIGKILL, the worker and its pool: no warm shutdown, no chance to clean up."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)
        self.log.close()


@pytest.fixture
def start_worker(transactional_db, settings, tmp_path):
    """Start Celery workers against the test database; all are stopped at the end."""
    celery_app.control.purge()
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "CHOSEN_LLM_BACKOFF_SECONDS": "0.05",
    }
    workers = []

    def start(**kwargs) -> Worker:
        worker = Worker(tmp_path / f"worker-{len(workers)}.log", env, **kwargs)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
    celery_app.control.purge()
