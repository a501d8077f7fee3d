"""Tenancy: how every request, admin page, API call and job is held to one organization.

The one mechanism is django-scopes. Every tenant-owned model declares
``objects = ScopedManager(organization="organization")``; its queries then only work inside
``scope(organization=...)`` and are filtered to that organization. Outside a scope they raise
ScopeError, so a forgotten filter fails closed instead of leaking another tenant's rows.

Scopes are opened in exactly these places:
- ``OrganizationMiddleware`` (below) for every request: the organization of the caller's API
  token, or the current organization the logged-in user chose (stored in the session);
- ``tasks.jobs.OrganizationTask`` for jobs;
- ``scopes_disabled()`` only for superusers in the admin, for resolving memberships,
  tokens and a person's own invitations before any organization is known (here), and in
  tests' factories.
A user without an organization gets no scope at all (never ``organization=None``, which
would mean "no filter").
"""

from collections.abc import Callable

from allauth.mfa.models import Authenticator
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.utils.functional import SimpleLazyObject
from django_scopes import scope, scopes_disabled

from tasks import sqlrows
from tasks.audit import request_context
from tasks.models import ApiToken, Invitation, Membership, Organization
from tasks.models.organizations import last_used

SESSION_KEY = "chosen_organization_id"
TOKEN_KEYWORD = "Bearer"


# Every request reads them: written out (tasks.sqlrows), by organization name (``by_name``).
_MEMBERSHIPS = f"""
SELECT {sqlrows.columns("m", Membership)}, {sqlrows.columns("o", Organization)}
FROM tasks_membership m JOIN tasks_organization o ON o.id = m.organization_id
WHERE m.user_id = %s ORDER BY o.name, m.id
"""  # noqa: S608 (only the models' column names are formatted in)


def memberships_of(user) -> list[Membership]:
    """All memberships of a user, across organizations (for choosing the current one), each
    with its organization."""
    if not user.is_authenticated:
        return []
    found = []
    for membership, organization in sqlrows.select_all(
        _MEMBERSHIPS, [user.pk], (Membership, Organization)
    ):
        membership.organization = organization
        found.append(membership)
    return found


def token_from_header(request: HttpRequest) -> ApiToken | None | bool:
    """The active token named by ``Authorization: Bearer chs_…``.

    Returns None when the request carries no bearer token, False when it carries one that
    is unknown or revoked.
    """
    header = request.META.get("HTTP_AUTHORIZATION", "")
    keyword, _, raw = header.partition(" ")
    if keyword.lower() != TOKEN_KEYWORD.lower() or not raw.startswith(ApiToken.PREFIX):
        return None
    with scopes_disabled():
        token = (
            ApiToken.objects.active()
            .select_related("organization")
            .filter(key_digest=ApiToken.digest(raw.strip()))
            .first()
        )
    return token or False


def select_organization(request: HttpRequest, organization_id: int) -> Membership:
    """Make one of the user's organizations the current one; 404 if they are not a member.
    It is remembered as the one they last used: their next log-in lands there."""
    for membership in memberships_of(request.user):
        if membership.organization_id == organization_id:
            request.session[SESSION_KEY] = organization_id
            with scopes_disabled():
                Membership.objects.filter(pk=membership.pk).update(last_used_at=timezone.now())
            return membership
    raise Http404("No such organization.")


def invitations_of(user) -> list[Invitation]:
    """The invitations waiting for the person's answer (read unscoped: they come from
    organizations the person is not a member of)."""
    if not user.is_authenticated:
        return []
    with scopes_disabled():
        return list(Invitation.objects.for_invitee(user).order_by("created_at"))


def pending_invitations(user) -> int:
    if not user.is_authenticated:
        return 0
    with scopes_disabled():
        return Invitation.objects.for_invitee(user).count()


class OrganizationMiddleware:
    """Sets ``request.organization``, ``request.membership`` (None for API tokens),
    ``request.memberships`` and ``request.api_token``, and runs the view inside the
    organization's scope."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.organization = None
        request.membership = None
        request.memberships = []
        request.api_token = token_from_header(request)

        if request.api_token:
            request.organization = request.api_token.organization
        elif request.api_token is None and request.user.is_authenticated:
            request.memberships = memberships_of(request.user)
            request.membership = self._current(request)
            if request.membership:
                request.organization = request.membership.organization

        if self._needs_second_factor(request):
            return mfa_required_response(request)
        with request_context(request):
            if request.user.is_superuser and request.path.startswith("/admin/"):
                with scopes_disabled():
                    return self.get_response(request)
            if request.organization is None:
                return self.get_response(request)
            with scope(organization=request.organization):
                return self.get_response(request)

    @staticmethod
    def _needs_second_factor(request: HttpRequest) -> bool:
        """A member of an organization that requires two-factor authentication, without
        an authenticator yet, may only set one up (or log out, or switch organization)."""
        membership = request.membership
        if membership is None or not membership.organization.require_mfa:
            return False
        if request.path.startswith(MFA_EXEMPT_PATHS):
            return False
        return not Authenticator.objects.filter(
            user=request.user, type=Authenticator.Type.TOTP
        ).exists()

    @staticmethod
    def _current(request: HttpRequest) -> Membership | None:
        if not request.memberships:
            return None
        chosen = request.session.get(SESSION_KEY)
        for membership in request.memberships:
            if membership.organization_id == chosen:
                return membership
        # No organization chosen in this session (it has just logged in): the one the
        # person last worked in, where their log-in was recorded too (tasks.audit.receivers).
        return last_used(request.memberships)


# Reachable without a second factor in an organization that requires one: allauth's pages
# (log-out, two-factor set-up, password), static files, the health probe, switching.
MFA_EXEMPT_PATHS = ("/accounts/", "/static/", "/healthz", "/organization/switch/")
MFA_REQUIRED = (
    "{organization} requires two-factor authentication. Set up an authenticator app "
    "before you continue."
)


def mfa_required_response(request: HttpRequest) -> HttpResponse:
    message = MFA_REQUIRED.format(organization=request.organization.name)
    if request.path.startswith("/api/"):
        error = {"field": None, "message": message, "code": "mfa_required"}
        return JsonResponse({"errors": [error]}, status=403)
    messages.warning(request, message)
    return redirect("mfa_activate_totp")


def organization_context(request: HttpRequest) -> dict:
    """Template context: the current organization and the others the user may switch to."""
    return {
        "current_organization": getattr(request, "organization", None),
        "current_membership": getattr(request, "membership", None),
        "user_memberships": getattr(request, "memberships", []),
        # Counted only on pages that show it (the header, for people logged in).
        "pending_invitations": SimpleLazyObject(lambda: pending_invitations(request.user)),
    }


def get_for_organization_or_404(queryset, request: HttpRequest, **lookup):
    """Fetch one tenant-owned object of the request's organization, or 404.

    Another organization's id is a 404, never a 403 that would confirm it exists.
    """
    if request.organization is None:
        raise Http404("No organization selected.")
    return get_object_or_404(queryset.filter(organization=request.organization), **lookup)


__all__ = [
    "Organization",
    "OrganizationMiddleware",
    "get_for_organization_or_404",
    "invitations_of",
    "last_used",
    "memberships_of",
    "organization_context",
    "pending_invitations",
    "select_organization",
    "token_from_header",
]
