"""docker-compose.yml, .env.example and README describe the same deployment."""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# What an operator puts in .env; compose has no default for it (CVE-2023-43791).
DB_PASSWORD = "operator-chosen-db-password"
APP_PASSWORD = "operator-chosen-app-password"
PASSWORDS = {"POSTGRES_PASSWORD": DB_PASSWORD, "POSTGRES_APP_PASSWORD": APP_PASSWORD}


def docker_compose(*args, **env) -> subprocess.CompletedProcess:
    """docker-compose run on our file, with the environment an operator's .env would give
    (and nothing from the developer's shell or a local .env that could stand in for it)."""
    assert shutil.which("docker-compose"), "make test installs Debian's docker-compose"
    base = {k: v for k, v in os.environ.items() if k not in PASSWORDS}
    with tempfile.TemporaryDirectory() as folder:
        no_dotenv = Path(folder) / "empty.env"
        no_dotenv.touch()
        return subprocess.run(
            ["docker-compose", "--env-file", str(no_dotenv), *args],
            cwd=ROOT,
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )


def compose_config() -> dict:
    result = docker_compose("--profile", "llm", "config", **PASSWORDS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_docker_compose_config_accepts_the_file():
    result = docker_compose("config", "-q", **PASSWORDS)
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_a_database_password():
    """No default database password (CVE-2023-43791), for the owner nor the application's
    role: unset or empty, compose stops and says which variable to set."""
    for variable in PASSWORDS:
        for value in (None, ""):
            env = {k: v for k, v in PASSWORDS.items() if k != variable}
            if value is not None:
                env[variable] = value
            result = docker_compose("config", "-q", **env)
            assert result.returncode != 0
            assert f"set {variable}" in result.stderr


def test_the_app_runs_as_its_own_role_and_migrations_as_the_owner():
    """README, "Database roles": web, worker and beat connect as chosen_app; the one-shot
    migrate service connects as the owner, migrates, then grants chosen_app its rights."""
    services = compose_config()["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == DB_PASSWORD
    for name in ("web", "worker", "chat-worker", "beat"):
        url = services[name]["environment"]["DATABASE_URL"]
        assert url == f"postgres://chosen_app:{APP_PASSWORD}@postgres:5432/chosen"
        assert "migrate" not in str(services[name]["command"])
    migrate = services["migrate"]
    assert migrate["environment"]["DATABASE_URL"] == (
        f"postgres://chosen:{DB_PASSWORD}@postgres:5432/chosen"
    )
    assert migrate["environment"]["DATABASE_APP_USER"] == "chosen_app"
    assert migrate["environment"]["DATABASE_APP_PASSWORD"] == APP_PASSWORD
    command = str(migrate["command"])
    assert command.index("manage.py migrate") < command.index("manage.py grant_app_role")
    assert migrate["restart"] == "no"
    depends = services["web"]["depends_on"]["migrate"]["condition"]
    assert depends == "service_completed_successfully"


def test_readme_and_env_example_say_how_to_set_the_database_password():
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / ".env.example").read_text()
    for variable in PASSWORDS:
        assert re.search(rf"^{variable}=$", example, re.MULTILINE)  # to be filled in
        assert f"`{variable}` (required" in readme


def test_compose_runs_the_whole_stack_with_health_checks():
    services = compose_config()["services"]
    assert set(services) == {
        "postgres",
        "redis",
        "migrate",
        "web",
        "worker",
        "chat-worker",
        "beat",
        "ollama",
    }
    assert services["postgres"]["image"] == "postgres:16"
    assert "/var/lib/postgresql/data" in str(services["postgres"]["volumes"])
    for name in ("postgres", "redis", "web", "worker", "chat-worker", "beat", "ollama"):
        assert services[name]["healthcheck"]["test"], name
    assert "manage.py migrate" in str(services["migrate"]["command"])
    assert "gunicorn" in str(services["web"]["command"])
    assert services["ollama"]["profiles"] == ["llm"]
    assert services["web"]["environment"]["DJANGO_ENV"] == "production"


def test_compose_runs_chat_turns_on_a_thread_worker_of_their_own():
    """project.celery, "Two queues": the jobs' worker takes the default queue only, and chat
    turns (the chat queue) go to a worker of many threads."""
    services = compose_config()["services"]
    worker, chat = services["worker"]["command"], services["chat-worker"]["command"]
    assert worker[worker.index("-Q") + 1] == "celery"
    assert chat[chat.index("-Q") + 1] == "chat"
    assert chat[chat.index("--pool") + 1] == "threads"
    assert "--concurrency=16" in chat


def test_compose_checks_web_for_liveness_and_worker_and_beat_by_their_heartbeats():
    """README, "Health": web is unhealthy only when it does not answer (an outage of
    PostgreSQL or Redis is theirs, and must not get web restarted); worker and beat are
    unhealthy when their heartbeat stops. tests/project/test_health.py runs these commands."""
    services = compose_config()["services"]
    web = services["web"]["healthcheck"]["test"]
    assert web[:2] == ["CMD", "python"] and "http://127.0.0.1:8000/healthz/live" in web[-1]
    for name, role in (("worker", "worker"), ("chat-worker", "worker"), ("beat", "beat")):
        check = services[name]["healthcheck"]
        assert check["test"] == ["CMD", "python", "-m", "project.health", role]
        # Checked at least every few heartbeats' staleness, given time to start and to answer.
        assert check["retries"] >= 2 and check["start_period"] and check["timeout"]
    assert "healthcheck" not in services["migrate"]


def settings_variables() -> set[str]:
    source = (ROOT / "project" / "settings.py").read_text()
    return set(re.findall(r'env(?:_bool|_list)?\("([A-Z_]+)"', source))


def test_every_setting_variable_is_documented_in_readme_and_env_example():
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / ".env.example").read_text()
    variables = settings_variables()
    assert len(variables) > 20
    assert sorted(v for v in variables if f"`{v}`" not in readme) == []
    assert sorted(v for v in variables if v not in example) == []


def test_every_setting_variable_reaches_the_containers():
    environment = compose_config()["services"]["web"]["environment"]
    assert sorted(settings_variables() - set(environment)) == []
    for service in ("worker", "chat-worker", "beat"):
        assert compose_config()["services"][service]["environment"] == environment
