"""docker-compose.yml, .env.example and README describe the same deployment."""

import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose_config() -> dict:
    assert shutil.which("docker-compose"), "make test installs Debian's docker-compose"
    result = subprocess.run(
        ["docker-compose", "--profile", "llm", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_docker_compose_config_accepts_the_file():
    result = subprocess.run(["docker-compose", "config", "-q"], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


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
