"""`make run` on a fresh clone, as a new user runs it: a new virtual environment, embedded
mode (SQLite, no broker), the demo loaded, the server answering, and the demo users logging
in through the browser. (It clones the committed HEAD: commit before running it locally.)"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from tests.conftest import log_in_through_the_form, open_page

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def make_run(tmp_path):
    checkout = tmp_path / "chosen"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(checkout)], check=True, timeout=120)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    # A new user's shell: no virtual environment active, whatever runs this test.
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(
        p for p in env["PATH"].split(os.pathsep) if not Path(p, "activate").exists()
    )
    log = (tmp_path / "make-run.log").open("w")
    process = subprocess.Popen(
        ["make", "run", f"PORT={port}"],
        cwd=checkout,  # a fresh checkout: its own environment and embedded database
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "make-run.log").read_text()
            try:
                if requests.get(f"{base}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            pytest.fail(
                "make run did not serve within 300 s:\n" + (tmp_path / "make-run.log").read_text()
            )
        yield base, tmp_path / "make-run.log"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def test_make_run_serves_the_demo_and_its_users_can_log_in(make_run, browser):
    base, log_file = make_run
    output = log_file.read_text()
    assert "lead@demo.chosen.local" in output and "annotator2@demo.chosen.local" in output

    health = requests.get(f"{base}/healthz", timeout=5).json()
    assert health["checks"]["database"]["vendor"] == "sqlite"
    assert health["checks"]["broker"]["mode"] == "eager"

    login = requests.get(f"{base}/accounts/login/", timeout=5)
    assert login.status_code == 200 and 'name="login"' in login.text

    for email, password in [
        ("lead@demo.chosen.local", "demo-lead-pass"),
        ("annotator1@demo.chosen.local", "demo-annotator-pass"),
    ]:
        context, page = open_page(browser, base)
        log_in_through_the_form(page, email, password)
        assert "DPO Preference Data Collection" in page.content()
        assert page.problems == []
        context.close()

    # The embedded database takes the allocator's portable path: an annotator judges one.
    context, page = open_page(browser, base)
    log_in_through_the_form(page, "annotator1@demo.chosen.local", "demo-annotator-pass")
    page.get_by_role("link", name="Annotate").first.click()
    page.wait_for_load_state()  # the page's script (deferred) listens for the keys
    first = page.locator("#judge-form").get_attribute("data-assignment")
    page.keyboard.press("a")
    page.keyboard.press("1")
    page.keyboard.press("Tab")
    page.keyboard.type("A answers the question; B does not.")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#judge-form")).not_to_have_attribute("data-assignment", first)
    expect(page.locator("#progress-text")).to_have_text("1 of 10")
    assert page.problems == []
    context.close()
