import os
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client

from project.embedded import broker_url
from tasks.models import Role
from tests.factories import OrganizationFactory, ProjectFactory, member


def redis_database(url: str, offset: int) -> str:
    """``url`` with its Redis database number moved by ``offset`` (0–15, wrapping): in the
    path of a ``redis://`` URL, in the ``db`` parameter of a ``unix://`` one."""
    if url.startswith("unix://"):
        path, _, query = url.partition("?")
        params = dict(parse_qsl(query))
        params["db"] = str((int(params.get("db", 0)) + offset) % 16)
        return f"{path}?{urlencode(params)}"
    parts = urlsplit(url)
    number = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(number + offset) % 16}"))


def pytest_configure(config):
    """`make test` runs the suite in pytest-xdist's processes gw0, gw1, …: pytest-django gives
    each its own test database, and here each gets its own Redis database, counting down from
    the one configured (every test clears the cache, and the job queues live in the same
    database). Nothing has connected to Redis yet: the cache, Celery and the rest read
    settings.REDIS_URL when they first connect; a process a test starts gets it through its
    environment."""
    worker = getattr(config, "workerinput", {}).get("workerid")
    if not worker:
        return
    url = redis_database(settings.REDIS_URL, -int(worker.removeprefix("gw")))
    settings.REDIS_URL = os.environ["REDIS_URL"] = url
    settings.CACHES["default"]["LOCATION"] = url
    settings.CELERY_BROKER_URL = broker_url(url)


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    """What a test stores (uploads, exports) goes under its own temporary media root, never
    the checkout's; a worker started by a test is given the same root."""
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _fresh_cache():
    """allauth's rate limits and TOTP replay protection live in the (Redis) cache."""
    cache.clear()
    yield
    cache.clear()


class Tenant:
    """One organization with a lead, an annotator and a project."""

    def __init__(self, name: str):
        self.organization = OrganizationFactory(name=name, slug=name.lower())
        self.lead = member(self.organization, Role.LEAD)
        self.annotator = member(self.organization, Role.ANNOTATOR)
        self.project = ProjectFactory(organization=self.organization, name=f"{name} project")


@pytest.fixture
def acme(db):
    return Tenant("Acme")


@pytest.fixture
def globex(db):
    return Tenant("Globex")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def as_user():
    return client_for


# --- the real browser ----------------------------------------------------------------------
# Debian's Chromium driven by Playwright (never `playwright install`: nothing is downloaded).
# Without the background-networking flags Chromium tries to reach Google's hosts at start.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser():
    import os

    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls
    # are still synchronous and safe.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def open_page(browser, base_url: str):
    """A page that records anything a user should never see: a request leaving the
    deployment, a script error or a Content-Security-Policy violation (both reach the
    console as errors)."""
    from urllib.parse import urlparse

    context = browser.new_context(base_url=base_url)
    page = context.new_page()
    page.problems = []
    page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))

    def only_this_deployment(route):
        if urlparse(route.request.url).hostname in ("localhost", "127.0.0.1"):
            route.continue_()
        else:
            page.problems.append(f"request outside the deployment: {route.request.url}")
            route.abort()

    context.route("**/*", only_this_deployment)
    return context, page


def log_in_through_the_form(page, email: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct; its /v1 URL."""
    from tests.llm_server import llama_server as llama_server_process

    with llama_server_process(tmp_path_factory.mktemp("llama") / "server.log") as url:
        yield url
