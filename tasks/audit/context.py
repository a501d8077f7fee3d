"""Who is acting, and from where: the request being served (``OrganizationMiddleware``
opens ``request_context``), a person a command or job acts for (``acting_as``), or else
"system"."""

import contextlib
import contextvars
import ipaddress
from dataclasses import dataclass

from allauth.account.adapter import get_adapter
from django.contrib.auth import get_user_model

User = get_user_model()


@dataclass(frozen=True)
class Who:
    actor: object | None = None  # a User
    label: str = "system"
    ip: str | None = None
    user_agent: str = ""


_current: contextvars.ContextVar[Who | None] = contextvars.ContextVar("audit_who", default=None)


def client_ip(request) -> str | None:
    """The client's address as allauth sees it (it honours ALLAUTH_TRUSTED_PROXY_COUNT, so
    behind the TLS proxy this is the client, not the proxy)."""
    try:
        ip = get_adapter(request).get_client_ip(request)
    except Exception:  # noqa: BLE001 (a missing or malformed header: no address)
        ip = request.META.get("REMOTE_ADDR")
    try:
        return str(ipaddress.ip_address(ip)) if ip else None
    except ValueError:
        return None


def who_of(request) -> Who:
    token = getattr(request, "api_token", None)
    user = getattr(request, "user", None)
    agent = request.META.get("HTTP_USER_AGENT", "")[:300]
    if token:
        return Who(None, f"token:{token.key_prefix}", client_ip(request), agent)
    if user is not None and user.is_authenticated and isinstance(user, User):
        return Who(user, user.email or user.get_username(), client_ip(request), agent)
    return Who(None, "anonymous", client_ip(request), agent)


def who_of_user(request, user) -> Who:
    base = who_of(request) if request is not None else Who()
    return Who(user, user.email or user.get_username(), base.ip, base.user_agent)


@contextlib.contextmanager
def request_context(request):
    """Events recorded while serving ``request`` name its caller and address."""
    reset = _current.set(who_of(request))
    try:
        yield
    finally:
        _current.reset(reset)


@contextlib.contextmanager
def acting_as(user):
    """Events recorded in a command or job on behalf of a person name them."""
    reset = _current.set(Who(user, user.email if user else "system"))
    try:
        yield
    finally:
        _current.reset(reset)


def current() -> Who:
    return _current.get() or Who()
