"""An idle server holds no library it has not used yet (project.lazy). Every web worker and
every Celery process imports all URL and task modules when it starts; openai (with pydantic
and its HTTP client) and numpy were about a quarter of an idle process's memory, and most
processes never call an LLM server nor fit a Bradley-Terry model."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db  # the test database, for the query
HEAVY = ("openai", "pydantic", "httpx2", "numpy")

START_AS_A_SERVER = """
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
from project.wsgi import application  # what a gunicorn worker loads
from django.urls import get_resolver
from project.celery import app
get_resolver().url_patterns  # every page's and API's view module
app.loader.import_default_modules()  # every job module, as a Celery worker does
from django.db import connection
with connection.cursor() as cursor:  # psycopg looks for numpy in sys.modules to dump an int
    cursor.execute("SELECT %s", [1])
print(" ".join(n for n in sys.argv[1:] if type(sys.modules.get(n)).__name__ == "module"))
{then}
"""


def _loaded(then: str = "") -> list[str]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
    }
    out = subprocess.run(
        [sys.executable, "-c", START_AS_A_SERVER.format(then=then), *HEAVY],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_a_started_server_has_not_loaded_the_heavy_libraries():
    assert _loaded() == []


def test_they_load_on_first_use():
    """The first LLM request or Bradley-Terry fit loads what it needs."""
    first_use = (
        "from tasks import llm; from annotation import bradley_terry as bt\n"
        "llm.openai.OpenAI; bt.np.zeros(1)\n"
        'print(" ".join(n for n in sys.argv[1:] if type(sys.modules.get(n)).__name__ == "module"))'
    )
    assert {"openai", "numpy"} <= set(_loaded(first_use))
