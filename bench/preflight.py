"""What every benchmark checks before it starts a server, and how it stops what it started.

A benchmark that finds a missing package only when it first uses it has often started
gunicorn or a worker by then, and leaves it running when it dies (annotation_load.py did,
without httpx, a test-only dependency). So each benchmark names its needs up front:
``require_modules`` / ``require_postgres`` / ``require_redis`` exit with a message naming
what is missing and how to get it, before anything is started. ``stop_on_signals`` turns
SIGTERM and SIGHUP into SystemExit, so the ``finally`` blocks that stop the servers run
for them too (Ctrl+C is KeyboardInterrupt already). The servers themselves are started as
``project.embedded.Child`` processes: each in its own process group, stopped with it.
"""

import importlib.util
import signal
import socket
import sys
import time

INSTALL_HINT = "make install-test"


def require_modules(*names: str, hint: str = INSTALL_HINT) -> None:
    """Exit (status 2) naming the Python packages among ``names`` that cannot be imported."""
    missing = [name for name in names if not _importable(name)]
    if missing:
        raise SystemExit(
            f"{sys.argv[0]}: missing Python package(s): {', '.join(missing)}. Install them "
            f"with `{hint}`. Nothing was started."
        )


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken or half-installed package
        return False


def require_postgres(url: str) -> None:
    """Exit unless the PostgreSQL server of ``url`` answers (its ``postgres`` database)."""
    import psycopg

    try:
        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", connect_timeout=5):
            pass
    except psycopg.OperationalError as exc:
        raise SystemExit(
            f"{sys.argv[0]}: PostgreSQL at {url.rsplit('/', 1)[0]} does not answer ({exc}). "
            "Nothing was started."
        ) from None


def require_redis(url: str) -> None:
    """Exit unless the Redis of ``url`` answers a PING."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        raise SystemExit(
            f"{sys.argv[0]}: Redis at {url} does not answer ({exc}). Nothing was started."
        ) from None


def require_free_port(port: int) -> None:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise SystemExit(
                f"{sys.argv[0]}: port {port} on 127.0.0.1 is taken. Nothing was started."
            ) from None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP raise SystemExit in the main thread, so ``finally`` blocks (which
    stop the servers a benchmark started) run for them as for Ctrl+C."""

    def leave(signum, frame):
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, leave)


# --- the host ---------------------------------------------------------------------------
# These machines are shared virtual machines: a neighbour slows every instruction without
# showing in this machine's load average or (on this hypervisor) its steal time. The same
# code (04dc9c4) gave bench/chat_load.py's annotators' p95 of 116-130 ms at 04:00 and 33-35
# ms at 06:50 on 2026-12-01, with the machine's own cores 70% idle at 06:50.
# A latency is therefore printed beside the host's speed at the time and what this machine's
# own processes used of its cores.


# reference_loop_ms() on the quiet 2-core AMD EPYC host of 2026-12-01 (26-28 ms).
QUIET_HOST_LOOP_MS = 27


def reference_loop_ms() -> float:
    """The host's single-thread speed now: the best of three runs of a fixed pure-Python
    loop (QUIET_HOST_LOOP_MS on a quiet host)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for n in range(1_000_000):
            total += n % 7
        best = min(best, time.perf_counter() - started)
    return best * 1000


def cpu_times() -> list[int]:
    """All cores' counters from /proc/stat: user nice system idle iowait irq softirq steal."""
    with open("/proc/stat") as stat:
        return [int(x) for x in stat.readline().split()[1:9]]


def cpu_use(before: list[int], after: list[int]) -> str:
    """What the machine's cores did between two ``cpu_times``: busy and steal, in %."""
    spent = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(spent) or 1
    busy = total - spent[3] - spent[4]
    return f"busy {100 * busy / total:.0f}%, steal {100 * spent[7] / total:.0f}%"


def host_report(loop_before: float, loop_after: float, cores_before, cores_after) -> list:
    """(label, value) lines a benchmark prints beside its figures: how busy this machine's
    cores were (``cpu_times`` before and after) and the host's speed (``reference_loop_ms``
    before and after)."""
    return [
        ("this machine's cores during the run", cpu_use(cores_before, cores_after)),
        (
            "host: reference loop before / after (ms)",
            f"{loop_before:.0f} / {loop_after:.0f} (about {QUIET_HOST_LOOP_MS} on the quiet "
            "host of 2026-12-01, bench/preflight.py)",
        ),
    ]
