"""API throttling: each organization token, and each logged-in user, has its own budget.

Kept apart from the viewsets: DRF imports its default throttle classes while
rest_framework.views is still loading. Counts live in the (Redis) cache, so every web
worker shares them."""

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle


class CallerRateThrottle(SimpleRateThrottle):
    """``token`` rate per API token (keyed by the token's id, so two tokens of one
    organization do not share a budget, and a revoked-and-replaced token starts afresh),
    ``user`` rate per logged-in user. Anonymous calls are refused by authentication before
    they could count."""

    scope = "user"

    def get_rate(self):
        # Read at call time (DRF binds the rates at import), so a changed setting applies.
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]

    def allow_request(self, request, view):
        self.scope = "token" if request.auth is not None else "user"
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view):
        if request.auth is not None:
            return self.cache_format % {"scope": "token", "ident": request.auth.pk}
        if request.user.is_authenticated:
            return self.cache_format % {"scope": "user", "ident": request.user.pk}
        return None
