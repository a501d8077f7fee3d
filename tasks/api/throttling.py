"""API throttling: each organization token, and each logged-in user, has its own budget.

Kept apart from the viewsets: DRF imports its default throttle classes while
rest_framework.views is still loading.

The count is one Lua script in Redis (settings.REDIS_URL, the cache's Redis), so every web
worker shares it and parallel requests cannot both read the same count: DRF's own cache
throttle reads a history list, appends and writes it back, and 16 parallel clients had
every request answered that way."""

import logging
import math
import threading
import time

import redis
from django.conf import settings
from django.core.cache import cache
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

logger = logging.getLogger(__name__)

# One caller's counter: a hash of the current fixed window's number ``w``, the calls admitted
# in it ``c`` and in the window before ``p``. The estimate of the last `span` seconds weighs
# the previous window by how much of it still lies inside them. A call is admitted, and
# counted, only if it keeps the estimate within the limit; a refused call is not counted.
# Redis's clock (TIME), not the web workers', places the windows. Returns {1, 0} or
# {0, milliseconds until a call would be admitted}.
_SLIDING_WINDOW = """
local limit, span = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local window = math.floor(now / span)
local elapsed = now - window * span
local state = redis.call('HMGET', KEYS[1], 'w', 'c', 'p')
local w, c, p = tonumber(state[1]), tonumber(state[2]) or 0, tonumber(state[3]) or 0
if w ~= window then
    if w == window - 1 then p = c else p = 0 end
    c = 0
end
if p * (span - elapsed) / span + c + 1 <= limit then
    redis.call('HSET', KEYS[1], 'w', window, 'c', c + 1, 'p', p)
    redis.call('EXPIRE', KEYS[1], 2 * span)
    return {1, 0}
end
local wait
if c + 1 <= limit then
    -- p > 0 here: wait until the previous window's weight has fallen far enough.
    wait = span - (limit - 1 - c) * span / p - elapsed
else
    -- this window is full: into the next one, until this window's weight has fallen.
    wait = span - elapsed + span * (1 - (limit - 1) / c)
end
return {0, math.ceil(wait * 1000)}
"""

# Short: Redis answers locally in well under a millisecond, and a request must not hang on
# the throttle. After a failure the throttle leaves Redis alone this long (fails open).
SOCKET_TIMEOUT = 0.25
PAUSE_AFTER_FAILURE = 1.0
WARNING_INTERVAL = 60.0

_clients: dict[str, tuple[redis.Redis, object]] = {}
_lock = threading.Lock()
_paused_until = 0.0
_last_warning = -math.inf


def _script(url: str):
    """The registered script on a client of the Redis at ``url`` (read at call time, so an
    overridden setting applies), one per URL and process; redis-py's pool is thread-safe."""
    with _lock:
        if url not in _clients:
            client = redis.Redis.from_url(
                url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT
            )
            _clients[url] = (client, client.register_script(_SLIDING_WINDOW))
        return _clients[url][1]


def _failed(error: Exception) -> None:
    global _paused_until, _last_warning
    now = time.monotonic()
    with _lock:
        _paused_until = now + PAUSE_AFTER_FAILURE
        warn = now - _last_warning >= WARNING_INTERVAL
        if warn:
            _last_warning = now
    if warn:
        logger.warning(
            "API throttle: Redis did not answer (%s); calls are not throttled until it does. "
            "(Logged at most once per %d s.)",
            error,
            WARNING_INTERVAL,
        )


class CallerRateThrottle(BaseThrottle):
    """``token`` rate per API token (keyed by the token's id, so two tokens of one
    organization do not share a budget, and a revoked-and-replaced token starts afresh),
    ``user`` rate per logged-in user. Anonymous calls are refused by authentication before
    they could count (and pass here uncounted, as with DRF's throttles).

    Window: a sliding window approximated by two fixed windows of the rate's period, the
    previous one weighted by the share of it still inside the last period (Cloudflare's
    scheme), for one small hash per caller. A fixed window alone lets a caller spend its
    budget twice within a few seconds around a window's end; here a caller who spent it is
    let in again only as the spent window's weight falls, ``budget × elapsed / period``
    calls, never the whole budget at once. In one fixed window no more than the budget is
    admitted, parallel requests included: check and increment are one Lua script, atomic,
    one round trip, on Redis's clock. (The estimate assumes the previous window's calls were
    spread evenly; bunched at its end they weigh a little less than they should, which is
    the scheme's known, small error.) Refused calls do not count, so a caller that keeps
    calling is let in again as its old calls age. ``Retry-After`` is when the estimate
    would admit a call.

    Redis unreachable or failing: the call is admitted (the API keeps answering), a warning
    is logged at most once a minute, and Redis is left alone for a second before the next
    try, so an outage does not cost every request a timeout."""

    scope = "user"
    parse_rate = SimpleRateThrottle.parse_rate
    cache_format = "throttle:%(scope)s:%(ident)s"

    def __init__(self):
        self.retry_after = None

    def get_rate(self):
        # Read at call time (DRF binds the rates at import), so a changed setting applies.
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]

    def get_cache_key(self, request, view):
        if request.auth is not None:
            return self.cache_format % {"scope": "token", "ident": request.auth.pk}
        if request.user.is_authenticated:
            return self.cache_format % {"scope": "user", "ident": request.user.pk}
        return None

    def allow_request(self, request, view):
        self.scope = "token" if request.auth is not None else "user"
        limit, span = self.parse_rate(self.get_rate())
        key = self.get_cache_key(request, view)
        if limit is None or key is None:
            return True
        if limit <= 0:
            self.retry_after = span
            return False
        if time.monotonic() < _paused_until:
            return True
        try:
            # In the cache's namespace (its KEY_PREFIX), so cache.clear() empties it too.
            admitted, wait_ms = _script(settings.REDIS_URL)(
                keys=[cache.make_key(key)], args=[limit, span]
            )
        except redis.RedisError as error:
            _failed(error)
            return True
        if admitted:
            return True
        self.retry_after = max(int(wait_ms), 1) / 1000
        return False

    def wait(self):
        return self.retry_after
