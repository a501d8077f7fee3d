"""Serving through a Redis or PostgreSQL outage: what people see instead of a 500.

Redis holds only what can be rebuilt or done without for a while: cached counts, the
allocator's reclaim pacing, allauth's rate limits and used TOTP codes. (Sessions live in
PostgreSQL: see SESSION_ENGINE in the settings.) ``FailSoftRedisCache`` keeps the cache
answering from the process's memory while Redis does not, so annotation goes on.

PostgreSQL holds everything; without it nothing can be served. ``DatabaseOutageMiddleware``
answers a clear 503 with ``Retry-After`` instead of a 500 with a traceback: a page that
reloads itself, JSON the annotate page's script understands (it sends the submit again, see
static/js/annotate.js), or the API's error list. Django reconnects by itself once the
database is back (CONN_HEALTH_CHECKS), so no web worker needs a restart.

Both log one warning when an outage starts (then at most once a minute) and one line
when it ends, never a traceback per request.
"""

import logging
import sys
import time
from collections.abc import Callable

import redis
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.core.signals import got_request_exception, setting_changed
from django.db import InterfaceError, OperationalError, connection
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.cache import add_never_cache_headers

log = logging.getLogger(__name__)

WARNING_INTERVAL = 60.0


class _Outage:
    """One dependency's state in this process: when it failed first, and when the warning
    was last logged. ``failed`` and ``recovered`` log; everything else is quiet."""

    def __init__(self, name: str, consequence: str):
        self.name, self.consequence = name, consequence
        self.since: float | None = None
        self.warned_at = -WARNING_INTERVAL
        self.count = 0
        self.retry_at = 0.0  # until then the dependency is left alone (Redis)

    def failed(self, error: Exception) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since, self.count = now, 0
        self.count += 1
        if now - self.warned_at >= WARNING_INTERVAL:
            self.warned_at = now
            log.warning(
                "%s unavailable (%s: %s); %s. (Logged at most once per %d s.)",
                self.name,
                type(error).__name__,
                str(error).strip().splitlines()[0] if str(error).strip() else "",
                self.consequence,
                WARNING_INTERVAL,
            )

    def recovered(self) -> None:
        if self.since is not None:
            log.warning(
                "%s answers again after %.1f s (%d calls answered without it).",
                self.name,
                time.monotonic() - self.since,
                self.count,
            )
            self.since, self.warned_at = None, -WARNING_INTERVAL


# --- Redis: the cache ---------------------------------------------------------------------

# After a failed call, Redis is left alone this long: an outage must not cost every cache
# call a connection attempt. Then the next call tries it again.
REDIS_PAUSE_SECONDS = 1.0
# The calls of Django's cache API; get_or_set, decr, the async and the `in` forms go
# through them.
_CACHE_CALLS = (
    "add",
    "get",
    "set",
    "touch",
    "delete",
    "get_many",
    "has_key",
    "incr",
    "set_many",
    "delete_many",
    "clear",
)


class _OneClientPerServer(RedisCacheClient):
    """Django's Redis cache client, keeping its ``redis.Redis`` objects. Django makes a new
    one for every call, and building its table of response callbacks cost about 0.3 ms of
    CPU each time (two or three calls per annotate request). A ``redis.Redis`` takes a
    connection from its pool per command, so one per pool serves every call and thread."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients: dict[int, redis.Redis] = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class FailSoftRedisCache(RedisCache):
    """Django's Redis cache that keeps answering while Redis does not.

    A call that fails (Redis stopped, restarting, or silent beyond the socket timeouts in
    the cache's OPTIONS) is answered by a memory cache of this process instead, and Redis
    is left alone for REDIS_PAUSE_SECONDS; then the next call tries it again. While Redis
    is away, for each user of the cache:

    - cached counts (an annotator's progress) are computed again in each process;
    - the allocator looks for stale assignments at its pace, per process;
    - allauth's rate limits count per process: with W web workers a client gets at most W
      times a limit, so log-in keeps working and guessing passwords stays bounded;
    - a used TOTP code is remembered per process: within its 30 s it could be used once
      more on another web worker.

    When Redis answers again it is the cache again, and what the memory cache held is
    forgotten. Errors that are not Redis's (a value that cannot be pickled) still raise.
    """

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = _OneClientPerServer
        self._memory = LocMemCache(
            f"fail-soft:{server}",
            {
                "TIMEOUT": params.get("TIMEOUT", 300),
                "KEY_PREFIX": params.get("KEY_PREFIX", ""),
                "VERSION": params.get("VERSION", 1),
                "KEY_FUNCTION": params.get("KEY_FUNCTION"),
                "OPTIONS": {"MAX_ENTRIES": 10_000},
            },
        )
        # One state per process and server, not per instance: Django makes a cache instance
        # per thread, and with gunicorn's threads each would warn and try Redis on its own.
        self._outage = _redis_outages.setdefault(
            server,
            _Outage(
                "Redis (cache)",
                "the cache answers from each web process's memory until it is back",
            ),
        )


_redis_outages: dict[str, _Outage] = {}


@receiver(setting_changed)
def _forget_outages(setting, **kwargs):
    """New cache settings (tests) start with no outage remembered."""
    if setting == "CACHES":
        _redis_outages.clear()


def _fail_soft(name: str) -> Callable:
    from_redis = getattr(RedisCache, name)

    def call(self, *args, **kwargs):
        if time.monotonic() >= self._outage.retry_at:
            try:
                result = from_redis(self, *args, **kwargs)
            except redis.RedisError as error:
                self._outage.retry_at = time.monotonic() + REDIS_PAUSE_SECONDS
                self._outage.failed(error)
            else:
                self._outage.recovered()
                return result
        else:
            self._outage.count += 1
        return getattr(self._memory, name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = from_redis.__doc__
    return call


for _name in _CACHE_CALLS:
    setattr(FailSoftRedisCache, _name, _fail_soft(_name))


# --- PostgreSQL -----------------------------------------------------------------------------

DATABASE_RESTARTING = "The database is restarting; your answers are safe, retrying…"
RETRY_AFTER_SECONDS = 5
# Answered without the database: the health probe reports the database itself (and its
# liveness part must not depend on it).
WITHOUT_DATABASE = ("/healthz",)

_database = _Outage("PostgreSQL", "requests are answered 503 until it is back")


def _database_down(error: Exception) -> bool:
    """Whether this error means the connection is gone (refused, closed, the server shut
    down), not a fault of one query (a deadlock or a timeout leaves the connection usable)."""
    if not isinstance(error, OperationalError | InterfaceError):
        return False
    raw = connection.connection
    return raw is None or raw.closed or getattr(raw, "broken", False)


def database_unavailable_response(request: HttpRequest) -> HttpResponse:
    """503 with Retry-After: JSON for the annotate page's script (``retry``: send it again)
    and the API (its error list), otherwise a page that reloads itself."""
    if request.headers.get("X-Chosen-Fragment") == "1":
        response = JsonResponse(
            {"retry": True, "message": DATABASE_RESTARTING, "code": "database_unavailable"},
            status=503,
        )
    elif request.path.startswith("/api/"):
        error = {
            "field": None,
            "message": "The database is restarting; send the request again in a few seconds.",
            "code": "database_unavailable",
        }
        response = JsonResponse({"errors": [error]}, status=503)
    else:
        html = render_to_string(
            "503.html",
            {"reload": request.method in ("GET", "HEAD"), "retry_after": RETRY_AFTER_SECONDS},
        )
        response = HttpResponse(html, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    add_never_cache_headers(response)
    # Said once by _database (a warning per outage), not by django.request once per request.
    response._has_been_logged = True
    return response


class DatabaseOutageMiddleware:
    """Answers 503 instead of 500 while PostgreSQL cannot be reached.

    Before the first middleware that reads the database it opens the request's connection
    (Django checks a kept connection first and reconnects if it died: CONN_HEALTH_CHECKS,
    the check Django would make at the first query anyway). Refused: a 503 before anything
    ran. A connection lost while the view runs is a 503 too (``process_exception``); what
    the view did either committed or not, and the annotate page's submit, sent again, is
    stored once either way (one judgment per assignment)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(WITHOUT_DATABASE):
            try:
                with connection.cursor():
                    pass
            except (OperationalError, InterfaceError) as error:
                _database.failed(error)
                return database_unavailable_response(request)
            _database.recovered()
        response = self.get_response(request)
        if response.status_code == 500 and getattr(request, "database_unavailable", False):
            # Lost in a later middleware (the session, the membership): Django made it a
            # 500 before this one could see the exception (process_exception is for views).
            return database_unavailable_response(request)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception):
        if not _database_down(exception):
            return None
        _database.failed(exception)
        return database_unavailable_response(request)


@receiver(got_request_exception)
def _note_a_lost_database(sender, request=None, **kwargs):
    """Any uncaught exception of a request comes here first (the view's, or a middleware's
    that DatabaseOutageMiddleware cannot catch): one that means PostgreSQL went away marks
    the request, so the middleware answers 503 and django.request does not log it."""
    error = sys.exc_info()[1]
    if request is not None and error is not None and _database_down(error):
        _database.failed(error)
        request.database_unavailable = True
