"""Health: is web alive, can it serve, are the Celery worker and beat beating?

Three public pages, for three readers:

- ``/healthz/live`` (liveness) asks nothing of anyone: this process answers. An
  orchestrator that restarts web on a failed liveness probe restarts it only when web
  itself is wedged, never because PostgreSQL or Redis is down (a restart would not help).
- ``/healthz/ready`` (readiness): the database, the broker (Redis, which also holds the
  cache and sessions) and the free space of the disk under MEDIA_ROOT, each with its status
  and time; 503 naming what failed. A load balancer stops sending requests meanwhile.
- ``/healthz``: readiness's checks and status, plus the heartbeats of the Celery workers
  and beat, for an operator or a monitor. A dead worker is reported here but does not make
  web unready: annotators keep judging while jobs wait in the queue.

The worker and beat record their heartbeat in Redis (``project.celery``);
``python -m project.health worker`` (or ``beat``) is their containers' health check.

The pages are public (probes do not log in), so a failure is named by its type only (the
message, which can hold host names, user names and addresses, goes to the server log), and
a worker by a digest of its node name, which holds its host name."""

import argparse
import hashlib
import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from project.celery import heartbeats

log = logging.getLogger(__name__)

# --- the checks of readiness ----------------------------------------------------------------


def _failure(check: str, exc: Exception, **extra) -> dict:
    log.warning("healthz: %s check failed", check, exc_info=exc)
    return {"ok": False, **extra, "error": type(exc).__name__}


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)


def _check_database() -> dict:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "not healthy"; say which
        return _failure("database", exc)
    return {"ok": True, "vendor": connection.vendor, "ms": _ms_since(started)}


def _check_broker() -> dict:
    started = time.perf_counter()
    try:
        _redis().ping()
    except Exception as exc:  # any failure means "not healthy"; say which
        return _failure("broker", exc, mode="redis")
    return {"ok": True, "mode": "redis", "ms": _ms_since(started)}


def _check_disk() -> dict:
    """Free space and writability where uploads and exports go: an export that cannot be
    written fails, an import cannot be stored. MEDIA_ROOT may not exist yet (nothing was
    uploaded): its nearest existing folder is on the disk it will be created on."""
    started = time.perf_counter()
    minimum = settings.CHOSEN_HEALTH_MIN_FREE_MB
    try:
        media = Path(settings.MEDIA_ROOT)
        folder = next(path for path in (media, *media.parents) if path.exists())
        free_mb = shutil.disk_usage(folder).free // 2**20
        writable = os.access(folder, os.W_OK)
    except Exception as exc:  # any failure means "not healthy"; say which
        return _failure("disk", exc, min_free_mb=minimum)
    ok = free_mb >= minimum and writable
    if not ok:
        log.warning(
            "healthz: disk check failed: %s MB free under %s (at least %s MB wanted), %s",
            free_mb,
            folder,
            minimum,
            "writable" if writable else "not writable",
        )
    return {
        "ok": ok,
        "free_mb": free_mb,
        "min_free_mb": minimum,
        "writable": writable,
        "ms": _ms_since(started),
    }


# Without these web cannot serve anyone; a low or unwritable media disk only stops imports
# and exports (they fail with that reason), so it makes web "degraded", not unready: taking
# web out of rotation for it would stop every annotator too.
SERVING = ("database", "broker")


def readiness() -> dict:
    checks = {"database": _check_database(), "broker": _check_broker(), "disk": _check_disk()}
    failing = [name for name in SERVING if not checks[name]["ok"]]
    degraded = [name for name, check in checks.items() if name not in SERVING and not check["ok"]]
    status = "unavailable" if failing else "degraded" if degraded else "ok"
    return {"status": status, "failing": failing, "degraded": degraded, "checks": checks}


def _public_id(node: str) -> str:
    """How a public page names a worker: stable, and not its host name."""
    return hashlib.sha256(node.encode()).hexdigest()[:10]


def _background() -> dict:
    """The workers' and beat's heartbeats, for the full report (never for readiness)."""
    try:
        client = _redis()
        found = {role: heartbeats(role, client) for role in ("worker", "beat")}
    except Exception as exc:  # Redis is down: the broker check says so too
        failure = _failure("heartbeat", exc)
        return {"workers": failure, "beat": failure}
    report = {}
    for role, name in (("worker", "workers"), ("beat", "beat")):
        beats = [{"id": _public_id(node), **beat} for node, beat in found[role].items()]
        alive = sum(beat["ok"] for beat in beats)
        report[name] = {"ok": alive > 0, "alive": alive, "stale": len(beats) - alive}
        report[name]["beats"] = beats
    return report


# --- the pages ------------------------------------------------------------------------------


def _answer(report: dict) -> JsonResponse:
    return JsonResponse(report, status=503 if report["status"] == "unavailable" else 200)


@never_cache
@require_GET
def live(request) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def ready(request) -> JsonResponse:
    return _answer(readiness())


@never_cache
@require_GET
def report(request) -> JsonResponse:
    return _answer({**readiness(), "background": _background()})


# --- the containers' own health checks ---------------------------------------------------------


def check_process(role: str, node: str | None = None) -> tuple[bool, str]:
    """Is this machine's (container's) worker or beat beating? Its worker's node name ends
    in ``@<host name>`` (Celery's ``%h``), beat's is the host name; ``node`` names one."""
    host = socket.gethostname()
    try:
        beats = heartbeats(role)
    except redis.RedisError as exc:
        return False, f"{role}: Redis unreachable ({type(exc).__name__}: {exc})"
    if node:
        mine = {name: beat for name, beat in beats.items() if name == node}
    elif role == "worker":
        mine = {name: beat for name, beat in beats.items() if name.endswith(f"@{host}")}
    else:
        mine = {name: beat for name, beat in beats.items() if name == host}
    if not mine:
        return False, f"{role} on {node or host}: no heartbeat"
    lines = [
        f"{role} {name}: last beat {beat['age_s']} s ago "
        f"({'ok' if beat['ok'] else 'stale'}, stale after {beat['stale_after_s']:g} s)"
        for name, beat in sorted(mine.items())
    ]
    return all(beat["ok"] for beat in mine.values()), "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m project.health",
        description="Exit 0 if this machine's Celery worker (or beat) beat lately, 1 if not.",
    )
    parser.add_argument("role", choices=["worker", "beat"])
    parser.add_argument("--node", help="the node name to check (default: this host's)")
    args = parser.parse_args(argv)
    ok, message = check_process(args.role, args.node)
    print(message)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    sys.exit(main())
