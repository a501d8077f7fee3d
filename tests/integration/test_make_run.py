"""`make run` on a fresh clone, as a new user runs it, and the whole demo through Chromium.

With nothing configured it starts the production architecture privately: PostgreSQL and
Redis under var/, a Celery worker and beat beside the web server. With DATABASE_URL and
REDIS_URL set it uses those servers and starts neither. Either way: two annotators judge
the seed project with the keyboard, the lead computes a QC report (a job the worker runs)
and sees agreement figures, exports TRL from the Exports page and downloads train.jsonl;
then `make run` is stopped and no process it started is left. With private servers, a
second `make run` finds the data, and a part that dies stops the rest.

(It clones the committed HEAD: commit before running it locally.)
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
import redis
import requests
from django.conf import settings
from playwright.sync_api import expect

from project.demo import DEMO_LOGINS, STUDY_PROJECT_NAME
from tests.conftest import log_in_through_the_form, open_page

ROOT = Path(__file__).resolve().parents[2]
SEED_PROJECT = "DPO Preference Data Collection"
LEAD = next(login for login in DEMO_LOGINS if login.role == "lead")
ANNOTATORS = [login for login in DEMO_LOGINS if login.role == "annotator"][:2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_of(checkout: Path) -> list[str]:
    """Every process whose working directory or command line lies in the checkout: what
    `make run` started there (servers, worker, beat, web) and anything they started."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        if cwd.startswith(str(checkout)) or str(checkout) in cmdline:
            found.append(f"{proc.name}: {cmdline.strip()} (in {cwd})")
    return found


class MakeRun:
    def __init__(self, checkout: Path, log_path: Path, env: dict):
        self.checkout, self.log_path = checkout, log_path
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log_path.open("w")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            ["make", "run", f"PORT={self.port}"],
            cwd=checkout,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal would give it
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log_in_page(self, seconds: float = 420) -> float:
        deadline = self.started + seconds
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                if requests.get(f"{self.base}/accounts/login/", timeout=2).ok:
                    return time.monotonic() - self.started
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        pytest.fail(f"make run did not serve within {seconds:.0f} s:\n{self.output()}")

    def stop(self, sig=signal.SIGTERM) -> int:
        """What a terminal's Ctrl+C or a service manager's stop does: a signal to the group."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
        try:
            return self.process.wait(timeout=120)
        finally:
            self.log.close()


def fresh_clone(tmp_path: Path) -> Path:
    checkout = tmp_path / "chosen"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(checkout)], check=True, timeout=120)
    return checkout


def new_users_environment() -> dict:
    """A new user's shell: no virtual environment active, no Chosen variables set."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    for name in ("DJANGO_ALLOW_ASYNC_UNSAFE", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    env["PATH"] = os.pathsep.join(
        p for p in env["PATH"].split(os.pathsep) if not Path(p, "activate").exists()
    )
    return env


@pytest.fixture(params=["private servers", "DATABASE_URL and REDIS_URL"])
def make_run(request, tmp_path):
    checkout = fresh_clone(tmp_path)
    env = new_users_environment()
    system = request.param != "private servers"
    if system:
        # The system PostgreSQL and Redis, on a database and Redis db of this test's own.
        db = settings.DATABASES["default"]
        name = "chosen_make_run"
        admin = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{name}"
        env["REDIS_URL"] = re.sub(r"/\d+$", "/9", settings.REDIS_URL)
        redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    run = MakeRun(checkout, tmp_path / "make-run.log", env)
    run.system = system
    try:
        yield run
    finally:
        if run.process.poll() is None:
            run.stop()
        for line in processes_of(checkout):  # never leave a stray server to the next test
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
        if system:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            redis.Redis.from_url(env["REDIS_URL"]).flushdb()


def judge_with_the_keyboard(browser, base: str, email: str, password: str, items: int) -> None:
    context, page = open_page(browser, base)
    log_in_through_the_form(page, email, password)
    seed_row = page.get_by_role("row").filter(has_text=SEED_PROJECT)
    seed_row.get_by_role("link", name="Annotate").click()
    page.wait_for_load_state()  # the page's script (deferred) listens for the keys
    for n in range(1, items + 1):
        shown = page.locator("#judge-form").get_attribute("data-assignment")
        page.keyboard.press("a")
        page.keyboard.press("1")
        page.keyboard.press("Tab")
        page.keyboard.type("A answers the question; B does not.")
        page.keyboard.press("Control+Enter")
        expect(page.locator("#judge-form")).not_to_have_attribute("data-assignment", shown)
        expect(page.locator("#progress-text")).to_have_text(re.compile(rf"^{n} of \d+$"))
    assert page.problems == []
    context.close()


def test_make_run_serves_the_whole_demo_and_stops_everything(make_run, browser, tmp_path):
    run = make_run
    seconds = run.wait_for_log_in_page()
    where = "system" if run.system else "private"
    print(f"make run ({where} servers): log-in page {seconds:.0f} s after the clone")
    output = run.output()
    for login in DEMO_LOGINS:
        assert login.email in output
    health = requests.get(f"{run.base}/healthz", timeout=5).json()
    assert health["status"] == "ok"
    assert health["checks"]["database"]["vendor"] == "postgresql"
    assert health["checks"]["broker"]["mode"] == "redis"
    private_data = run.checkout / "var" / "postgres" / "PG_VERSION"
    assert private_data.exists() is not run.system

    # Two annotators judge the seed project from the keyboard.
    for annotator in ANNOTATORS:
        judge_with_the_keyboard(browser, run.base, annotator.email, annotator.password, 2)

    # The lead: a fresh QC report of the finished study, computed by the worker.
    context, page = open_page(browser, run.base)
    log_in_through_the_form(page, LEAD.email, LEAD.password)
    page.get_by_role("link", name=STUDY_PROJECT_NAME).first.click()
    project_id = int(re.search(r"/projects/(\d+)/", page.url).group(1))
    before = page.request.get(f"/api/v1/projects/{project_id}/qc-report").json()
    page.get_by_role("link", name="Quality control").click()
    expect(page.locator("#qc-kappa")).to_be_visible()  # the demo's own report
    page.get_by_role("button", name="Compute a fresh report").click()
    # The page follows the job and reloads itself when it ends (job-progress.js): wait for
    # that as a user would, rather than reloading on top of the page's own reload.
    expect(page.locator("#job-box")).to_have_count(0, timeout=120_000)
    latest = page.request.get(f"/api/v1/projects/{project_id}/qc-report").json()
    assert latest["id"] != before["id"] and latest["status"] == "succeeded", latest
    kappa = page.locator("#qc-kappa")
    expect(kappa).to_be_visible()
    expect(page.locator("#qc-agreement")).to_contain_text(re.compile(r"\d\.\d"))
    expect(page.locator("#qc-agreement")).to_contain_text("α")

    # …and a TRL export (conversational: the study has multi-turn prompts), written by the
    # worker, downloaded from the Exports page.
    page.goto(f"/projects/{project_id}/")
    page.get_by_role("link", name="Exports").click()
    page.get_by_label("Format").select_option("trl-conversational")
    page.get_by_role("button", name="Export").click()
    row = page.locator("#exports tbody tr").first
    expect(row).to_contain_text("Succeeded", timeout=120_000)  # the page follows the job
    with page.expect_download() as download:
        row.get_by_role("link", name="train.jsonl", exact=True).click()
    saved = tmp_path / "train.jsonl"
    download.value.save_as(saved)
    records = [json.loads(line) for line in saved.read_text().splitlines()]
    assert records and all(set(r) >= {"prompt", "chosen", "rejected"} for r in records)
    assert all(r["chosen"] != r["rejected"] and r["prompt"][-1]["role"] == "user" for r in records)
    assert page.problems == []
    context.close()

    if not run.system:
        with psycopg.connect(**_private_db(run.checkout)) as conn:
            stored = conn.execute(JUDGMENTS).fetchone()[0]

    # Stopped as a terminal's Ctrl+C or a service manager would: nothing is left running.
    assert run.stop() in (0, 2, -signal.SIGTERM), run.output()  # make's own exit status
    deadline = time.monotonic() + 30
    while processes_of(run.checkout) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_of(run.checkout) == [], run.output()
    assert "Stopped." in run.output()
    if not run.system:
        a_second_make_run_keeps_the_data_and_a_dead_part_stops_the_rest(run, stored, tmp_path)


JUDGMENTS = "SELECT count(*) FROM annotation_judgment"


def a_second_make_run_keeps_the_data_and_a_dead_part_stops_the_rest(
    first: MakeRun, stored: int, tmp_path
):
    """The private database outlives a stop: the judgments the first run stored, the second
    finds. When a part dies (here the Celery worker, SIGKILLed as the OOM killer would),
    `make run` says which, stops the rest and fails, leaving nothing running. (Part of the
    test above, on its checkout: a clone, an install and a demo of its own cost a minute.)"""
    checkout, env = first.checkout, new_users_environment()
    assert stored >= 2 * len(ANNOTATORS)
    second = MakeRun(checkout, tmp_path / "second.log", env)
    try:
        second.wait_for_log_in_page()
        assert "Creating the private PostgreSQL database" not in second.output()
        assert "Creating the private PostgreSQL database" in first.output()
        with psycopg.connect(**_private_db(checkout)) as conn:
            assert conn.execute(JUDGMENTS).fetchone()[0] == stored
        os.kill(_worker_pid(checkout), signal.SIGKILL)
        assert second.process.wait(timeout=120) != 0
    finally:
        second.stop(signal.SIGINT)
    assert "Celery worker exited" in second.output()
    assert processes_of(checkout) == [], second.output()


def _worker_pid(checkout: Path) -> int:
    """The Celery worker's main process: the one whose parent is `make run`'s supervisor
    (the jobs' worker, not the chat worker: ``-Q celery``)."""
    for line in processes_of(checkout):
        pid = line.split(":")[0]
        if " worker -Q celery " in line:
            parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
            if b"project.embedded" in Path(f"/proc/{parent}/cmdline").read_bytes():
                return int(pid)
    raise AssertionError("no Celery worker is running")


def _private_db(checkout: Path) -> dict:
    from project.embedded import DATABASE_NAME, socket_dir

    return {"host": str(socket_dir(checkout)), "user": "postgres", "dbname": DATABASE_NAME}
