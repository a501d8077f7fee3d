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


def docker_compose(*args, **env) -> subprocess.CompletedProcess:
    """docker-compose run on our file, with the environment an operator's .env would give
    (and nothing from the developer's shell or a local .env that could stand in for it)."""
    assert shutil.which("docker-compose"), "make test installs Debian's docker-compose"
    base = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
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
    result = docker_compose("--profile", "llm", "config", POSTGRES_PASSWORD=DB_PASSWORD)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_docker_compose_config_accepts_the_file():
    result = docker_compose("config", "-q", POSTGRES_PASSWORD=DB_PASSWORD)
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_a_database_password():
    """No default database password (CVE-2023-43791): unset or empty, compose stops and
    says which variable to set."""
    for env in ({}, {"POSTGRES_PASSWORD": ""}):
        result = docker_compose("config", "-q", **env)
        assert result.returncode != 0
        assert "set POSTGRES_PASSWORD" in result.stderr


def test_the_operators_database_password_reaches_postgres_and_the_app():
    services = compose_config()["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == DB_PASSWORD
    for name in ("web", "worker", "beat"):
        url = services[name]["environment"]["DATABASE_URL"]
        assert url == f"postgres://chosen:{DB_PASSWORD}@postgres:5432/chosen"


def test_readme_and_env_example_say_how_to_set_the_database_password():
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / ".env.example").read_text()
    assert re.search(r"^POSTGRES_PASSWORD=$", example, re.MULTILINE)  # to be filled in
    assert "`POSTGRES_PASSWORD` (required" in readme


def test_compose_runs_the_whole_stack_with_health_checks():
    services = compose_config()["services"]
    assert set(services) == {"postgres", "redis", "web", "worker", "beat", "ollama"}
    assert services["postgres"]["image"] == "postgres:16"
    assert "/var/lib/postgresql/data" in str(services["postgres"]["volumes"])
    for name in ("postgres", "redis", "web", "ollama"):
        assert services[name]["healthcheck"]["test"], name
    assert "manage.py migrate" in str(services["web"]["command"])
    assert "gunicorn" in str(services["web"]["command"])
    assert services["ollama"]["profiles"] == ["llm"]
    assert services["web"]["environment"]["DJANGO_ENV"] == "production"


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
    for service in ("worker", "beat"):
        assert compose_config()["services"][service]["environment"] == environment
