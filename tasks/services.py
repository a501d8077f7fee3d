"""Writes on organizations, invitations, memberships and API tokens. Views, admin actions
and commands call these; they check nothing about the caller's identity beyond what they
are given."""

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

from tasks.accounts import canonical_email
from tasks.audit import Action, Who, acting_as, record, record_revocations
from tasks.models import ApiToken, Invitation, Membership, Organization, Role

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
def invite_member(
    *,
    organization: Organization,
    email: str,
    role: str,
    invited_by=None,
    first_name: str = "",
    last_name: str = "",
    base_url: str | None = None,
) -> Invitation:
    """Invite a person to an organization with a role; they become a member only when
    they accept (``accept_invitation``). Never changes an existing membership: that is an
    edit with its own role checks.

    An address without an account gets one with no password (and the names given); the
    e-mail carries a link to set one (allauth's password-reset link). An existing account
    is left as it is and asked by e-mail to log in and answer. Either way the organization
    sees the same pending invitation and nothing of the person until they accept, so the
    inviting lead cannot tell whether the address had an account. Inviting a person whose
    invitation is still pending sends it again, with the new role. Returns the invitation.
    """
    email = canonical_email(email)  # stored lower-case: allauth looks addresses up so
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        user = User(username=_unique_username(email), email=email)
        user.first_name, user.last_name = first_name, last_name
        user.set_unusable_password()
        user.save()
        EmailAddress.objects.create(user=user, email=email, primary=True, verified=False)
    if Membership.objects.with_scopes_disabled().filter(user=user, organization=organization):
        raise ValidationError(f"{email} is already a member of {organization.name}.")
    invitations = Invitation.objects.with_scopes_disabled()
    invitation = (
        invitations.select_for_update().pending().filter(user=user, organization=organization)
    ).first()
    if invitation is None:
        invitation = invitations.create(
            organization=organization, user=user, role=role, invited_by=invited_by
        )
    else:
        invitation.role, invitation.invited_by, invitation.sent_at = (
            role,
            invited_by,
            timezone.now(),
        )
        invitation.save(update_fields=["role", "invited_by", "sent_at"])
    record(
        Action.INVITATION_SENT,
        organization=organization,
        obj=invitation,
        object_repr=user.email,
        data={"role": role},
    )
    transaction.on_commit(lambda: send_invitation(invitation=invitation, base_url=base_url))
    return invitation


@transaction.atomic
def accept_invitation(*, invitation: Invitation) -> Membership:
    """The invited person accepts: they become a member with the invitation's role. The
    events name the person but not their address: the request is made from wherever they
    are working, which is not yet the inviting organization's business."""
    invitation = (
        Invitation.objects.with_scopes_disabled()
        .select_for_update()
        .select_related("user", "organization")
        .pending()
        .get(pk=invitation.pk)
    )
    user = invitation.user
    with acting_as(user):
        membership, _ = Membership.objects.with_scopes_disabled().get_or_create(
            user=user, organization=invitation.organization, defaults={"role": invitation.role}
        )
        invitation.accepted_at = timezone.now()
        invitation.save(update_fields=["accepted_at"])
        record(
            Action.INVITATION_ACCEPTED,
            organization=invitation.organization_id,
            obj=invitation,
            object_repr=user.email,
            data={"role": invitation.role},
        )
    return membership


@transaction.atomic
def decline_invitation(*, invitation: Invitation) -> None:
    """The invited person declines: the invitation is deleted and the organization's trail
    keeps only that it was declined (no address, no browser, nothing else of theirs)."""
    email = invitation.user.email
    record(
        Action.INVITATION_DECLINED,
        organization=invitation.organization_id,
        object_type="invitation",
        object_id=invitation.pk,
        object_repr=email,
        who=Who(None, email),
    )
    Invitation.objects.with_scopes_disabled().filter(pk=invitation.pk).delete()


@transaction.atomic
def withdraw_invitation(*, invitation: Invitation, actor_membership, superuser: bool) -> None:
    """A lead takes back an invitation still waiting for an answer (one they may give:
    a lead cannot withdraw an admin's). The person's invitations page no longer offers it;
    the trail keeps that it was withdrawn, by whom."""
    check_may_grant(actor_membership=actor_membership, superuser=superuser, role=invitation.role)
    record(
        Action.INVITATION_WITHDRAWN,
        organization=invitation.organization_id,
        object_type="invitation",
        object_id=invitation.pk,
        object_repr=invitation.user.email,
        data={"role": invitation.role},
    )
    Invitation.objects.with_scopes_disabled().filter(pk=invitation.pk).delete()


def resend_invitations(*, memberships, base_url: str | None = None) -> int:
    """Send a fresh set-password link to members who have not set a password yet (the
    first link expires; members from before invitations needed accepting); returns how
    many were sent. Callers must not show the count to the organization: whether a person
    has set a password or logged in is their own business."""
    sent = 0
    for membership in memberships.select_related("user", "organization"):
        if not membership.user.has_usable_password():
            _mail_set_password(membership.user, membership.organization, base_url=base_url)
            sent += 1
    return sent


def send_invitation(*, invitation: Invitation, base_url: str | None = None) -> None:
    """Mail an invitation: a person without a password yet gets a link to choose one, a
    person with an account a link to their invitations page."""
    user, organization = invitation.user, invitation.organization
    if not user.has_usable_password():
        _mail_set_password(user, organization, base_url=base_url, invitation=invitation)
        return
    context = {
        "organization": organization,
        "invitation": invitation,
        "user": user,
        "link": _absolute(reverse("tasks:invitations"), base_url),
    }
    send_mail(
        subject=f"{organization.name} invites you to join it on Chosen",
        message=render_to_string("tasks/email/invitation_existing_account.txt", context),
        from_email=None,
        recipient_list=[user.email],
    )


def _mail_set_password(
    user, organization: Organization, *, base_url: str | None, invitation=None
) -> None:
    path = reverse(
        "account_reset_password_from_key",
        kwargs={
            "uidb36": user_pk_to_url_str(user),
            "key": default_token_generator.make_token(user),
        },
    )
    context = {
        "organization": organization,
        "invitation": invitation,
        "user": user,
        "link": _absolute(path, base_url),
        "invitations_link": _absolute(reverse("tasks:invitations"), base_url),
    }
    send_mail(
        subject=f"You are invited to annotate for {organization.name} on Chosen",
        message=render_to_string("tasks/email/invitation.txt", context),
        from_email=None,
        recipient_list=[user.email],
    )


def _absolute(path: str, base_url: str | None) -> str:
    return (base_url or settings.CHOSEN_BASE_URL).rstrip("/") + path


def _unique_username(email: str) -> str:
    base = email.split("@")[0][:100] or "user"
    candidate, n = base, 1
    while User.objects.filter(username=candidate).exists():
        n += 1
        candidate = f"{base}{n}"
    return candidate
