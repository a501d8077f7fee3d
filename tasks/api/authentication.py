from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions

from tasks.audit import record_token_use
from tasks.tenancy import TOKEN_KEYWORD


class TokenUser(AnonymousUser):
    """Who a request authenticated by an organization token acts as: no person, but an
    authenticated caller bound to the token's organization."""

    def __init__(self, token):
        super().__init__()
        self.token = token

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def __str__(self) -> str:
        return f"token:{self.token.key_prefix}"


class OrganizationTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer chs_…``. The token itself was resolved by
    ``tasks.tenancy.OrganizationMiddleware`` (which must know the organization before the
    view runs); this class turns the result into DRF's user/auth pair or a 401."""

    def authenticate(self, request):
        token = getattr(request._request, "api_token", None)
        if token is None:
            return None
        if token is False:
            raise exceptions.AuthenticationFailed("Invalid or revoked API token.")
        previous_use = token.last_used_at
        if token.touch():
            record_token_use(token, previous_use)
        return TokenUser(token), token

    def authenticate_header(self, request) -> str:
        return f'{TOKEN_KEYWORD} realm="api"'
