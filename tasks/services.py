"""Writes on organizations, memberships and API tokens. Views, admin actions and commands
call these; they check nothing about the caller's identity beyond what they are given."""

import secrets

from allauth.account.forms import default_token_generator
from allauth.account.models import EmailAddress
from allauth.account.utils import user_pk_to_url_str
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from tasks.audit import record_revocations
from tasks.models import ApiToken, Membership, Organization, Role

User = get_user_model()


def create_api_token(
    *, organization: Organization, name: str, created_by=None
) -> tuple[ApiToken, str]:
    """Create a token and return it with its secret, which is not stored and cannot be
    shown again."""
    raw_key = ApiToken.PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.with_scopes_disabled().create(
        organization=organization,
        name=name,
        key_prefix=raw_key[:10],
        key_digest=ApiToken.digest(raw_key),
        created_by=created_by,
    )
    return token, raw_key


def revoke_api_tokens(*, tokens) -> int:
    """Revoke the given tokens (a queryset); already revoked ones keep their first date."""
    active = tokens.filter(revoked_at__isnull=True)
    ids = list(active.values_list("pk", flat=True))
    count = active.filter(pk__in=ids).update(revoked_at=timezone.now())
    record_revocations(ids)
    return count


def grantable_roles(actor_membership: Membership | None, *, superuser: bool) -> list[str]:
    """Roles a person may give: admins and superusers any, leads lead or annotator."""
    if superuser or (actor_membership and actor_membership.role == Role.ADMIN):
        return [Role.ADMIN, Role.LEAD, Role.ANNOTATOR]
    if actor_membership and actor_membership.role == Role.LEAD:
        return [Role.LEAD, Role.ANNOTATOR]
    return []


def check_may_grant(*, actor_membership, superuser: bool, role: str) -> None:
    if role not in grantable_roles(actor_membership, superuser=superuser):
        raise PermissionDenied(f"Your role may not give the role '{role}'.")


@transaction.atomic
def add_member(
    *,
    organization: Organization,
    email: str,
    role: str,
    first_name: str = "",
    last_name: str = "",
    base_url: str | None = None,
) -> tuple[Membership, bool]:
    """Give a person a role in an organization, creating their account if needed (never
    changing an existing membership: that is an edit with its own role checks).

    A new account gets no password; the person receives an e-mail with a link to set one
    (allauth's password-reset link). Returns the membership and whether an invitation
    was sent.
    """
    email = User.objects.normalize_email(email).strip()
    user = User.objects.filter(email__iexact=email).first()
    created = user is None
    if created:
        user = User(username=_unique_username(email), email=email)
        user.first_name, user.last_name = first_name, last_name
        user.set_unusable_password()
        user.save()
        EmailAddress.objects.create(user=user, email=email, primary=True, verified=False)
    members = Membership.objects.with_scopes_disabled()
    if members.filter(user=user, organization=organization).exists():
        raise ValidationError(f"{email} is already a member of {organization.name}.")
    membership = members.create(user=user, organization=organization, role=role)
    if created:
        transaction.on_commit(
            lambda: send_invitation(user=user, organization=organization, base_url=base_url)
        )
    return membership, created


def resend_invitations(*, memberships, base_url: str | None = None) -> int:
    """Send a fresh set-password link to members who have never logged in (the first
    link expires); returns how many were sent."""
    sent = 0
    for membership in memberships.select_related("user", "organization"):
        if membership.user.last_login is None:
            send_invitation(
                user=membership.user, organization=membership.organization, base_url=base_url
            )
            sent += 1
    return sent


def send_invitation(*, user, organization: Organization, base_url: str | None = None) -> None:
    path = reverse(
        "account_reset_password_from_key",
        kwargs={
            "uidb36": user_pk_to_url_str(user),
            "key": default_token_generator.make_token(user),
        },
    )
    context = {
        "organization": organization,
        "user": user,
        "link": (base_url or settings.CHOSEN_BASE_URL).rstrip("/") + path,
    }
    send_mail(
        subject=f"You are invited to annotate for {organization.name} on Chosen",
        message=render_to_string("tasks/email/invitation.txt", context),
        from_email=None,
        recipient_list=[user.email],
    )


def _unique_username(email: str) -> str:
    base = email.split("@")[0][:100] or "user"
    candidate, n = base, 1
    while User.objects.filter(username=candidate).exists():
        n += 1
        candidate = f"{base}{n}"
    return candidate
