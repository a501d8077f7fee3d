"""Production settings, checked in fresh interpreters (settings are read once per process)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k" * 30 + "-production-secret-for-the-test-only"


def run(args, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def import_settings(**env):
    return run(["-c", "import project.settings"], **env)


@pytest.mark.parametrize("missing", ["DATABASE_URL", "REDIS_URL"])
def test_production_refuses_to_start_without_its_database_or_redis(missing):
    """`make run`'s private servers are for a laptop; production names its own."""
    env = {
        "DJANGO_ENV": "production",
        "DJANGO_SECRET_KEY": GOOD_KEY,
        "DJANGO_ALLOWED_HOSTS": "chosen.internal",
        "DATABASE_URL": "postgres://chosen@db:5432/chosen",
        "REDIS_URL": "redis://redis:6379/0",
    }
    env[missing] = ""
    result = import_settings(**env)
    assert result.returncode != 0
    assert "needs DATABASE_URL (PostgreSQL) and REDIS_URL" in result.stderr


def test_any_database_but_postgresql_is_refused():
    result = import_settings(DATABASE_URL="sqlite:///var/chosen.sqlite3")
    assert result.returncode != 0
    assert "DATABASE_URL must name a PostgreSQL database" in result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    result = import_settings(DJANGO_ENV="production", DJANGO_ALLOWED_HOSTS="chosen.internal")
    assert result.returncode != 0
    assert "needs DJANGO_SECRET_KEY" in result.stderr


@pytest.mark.parametrize(
    "key",
    ["development", "short-but-random-3f9a1c", "ab" * 40, "django-insecure-" + "x7Qp2" * 10],
)
def test_production_refuses_the_development_key_and_weak_ones(key):
    """CVE-2023-43791: no built-in key, nor one Django's deploy check calls weak."""
    from project.settings import _DEV_SECRET_KEY

    result = import_settings(
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=_DEV_SECRET_KEY if key == "development" else key,
        DJANGO_ALLOWED_HOSTS="chosen.internal",
    )
    assert result.returncode != 0 and "needs DJANGO_SECRET_KEY" in result.stderr


@pytest.mark.parametrize("hosts", ["", "*", "chosen.internal,*"])
def test_production_refuses_missing_or_wildcard_hosts(hosts):
    result = import_settings(
        DJANGO_ENV="production", DJANGO_SECRET_KEY=GOOD_KEY, DJANGO_ALLOWED_HOSTS=hosts
    )
    assert result.returncode != 0
    assert "needs DJANGO_ALLOWED_HOSTS" in result.stderr


def test_production_settings_pass_check_deploy():
    """Not a single warning, not even a silenced one: Django's own summary line is all
    ``check --deploy`` prints."""
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=GOOD_KEY,
        DJANGO_ALLOWED_HOSTS="chosen.internal",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert result.stdout == "System check identified no issues (0 silenced).\n"


def test_production_logs_json_lines_to_stdout():
    result = run(
        [
            "-c",
            "import django, logging; django.setup(); "
            "logging.getLogger('chosen').warning('hello', extra={'project': 7})",
        ],
        DJANGO_SETTINGS_MODULE="project.settings",
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=GOOD_KEY,
        DJANGO_ALLOWED_HOSTS="chosen.internal",
    )
    import json

    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["message"] == "hello" and line["level"] == "WARNING" and line["project"] == 7


def test_production_health_probe_on_loopback_is_allowed():
    result = run(
        ["-c", "import project.settings as s; print(s.ALLOWED_HOSTS)"],
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=GOOD_KEY,
        DJANGO_ALLOWED_HOSTS="chosen.internal",
    )
    assert result.stdout.strip() == "['chosen.internal', '127.0.0.1', 'localhost']"


def test_behind_a_proxy_allauth_rate_limits_see_the_client_address():
    result = run(
        ["-c", "import project.settings as s; print(s.ALLAUTH_TRUSTED_PROXY_COUNT)"],
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=GOOD_KEY,
        DJANGO_ALLOWED_HOSTS="chosen.internal",
        DJANGO_BEHIND_TLS_PROXY="true",
    )
    assert result.stdout.strip() == "1"


def test_each_test_process_has_a_redis_database_of_its_own(request, settings, tmp_path):
    """`make test` runs in several processes (pytest-xdist), each with a Redis database of its
    own (tests/conftest.py), or one process's cache.clear() empties another's job queue.
    Two processes run tests/project/redis_probe.py (``--dist each``: the probe in both),
    configured with a database four below this run's (one no other process of the suite
    uses); each reports the database its cache, Celery, environment and settings use."""
    from tests.conftest import redis_database

    assert redis_database("redis://localhost:6379/15", -1) == "redis://localhost:6379/14"
    assert redis_database("redis://localhost:6379", -1) == "redis://localhost:6379/15"
    assert redis_database("unix:///srv/redis.sock?db=3", 2) == "unix:///srv/redis.sock?db=5"

    ours = int(getattr(request.config, "workerinput", {}).get("workerid", "gw0")[2:])
    configured = redis_database(settings.REDIS_URL, ours - 4)
    result = run(
        [
            *("-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "--dist", "each"),
            "tests/project/redis_probe.py",
        ],
        REDIS_URL=configured,
        CHOSEN_REDIS_PROBE=str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert found == {"gw0": redis_database(configured, 0), "gw1": redis_database(configured, -1)}
