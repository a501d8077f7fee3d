"""The tenant and who belongs to it: organizations, memberships and their roles, the
invitations that become memberships when the person accepts, and the organization's API
tokens."""

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django_scopes import ScopedManager


def new_salt() -> str:
    return secrets.token_hex(32)


class Organization(models.Model):
    """The tenant. Every tenant-owned row carries a foreign key to one."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    require_mfa = models.BooleanField(
        default=False,
        help_text="Members must set up two-factor authentication before they can work here.",
    )
    pseudonym_salt = models.CharField(
        max_length=64,
        default=new_salt,
        editable=False,
        help_text="Salt of the hashes that stand in for user ids read from imported logs.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    LEAD = "lead", "Project lead"
    ANNOTATOR = "annotator", "Annotator"


# Roles that run projects: they use the admin, create API tokens and see every project.
MANAGING_ROLES = frozenset({Role.ADMIN, Role.LEAD})


class MembershipQuerySet(models.QuerySet):
    def by_name(self) -> "MembershipQuerySet":
        """By organization name: the order a person's organizations are listed in."""
        return self.order_by("organization__name")


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    created_at = models.DateTimeField(auto_now_add=True)
    # When the person last chose this organization to work in: where their next log-in
    # lands and where it is recorded (tasks.tenancy, tasks.audit.receivers).
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ScopedManager(
        organization="organization",
        _manager_class=models.Manager.from_queryset(MembershipQuerySet),
    )

    class Meta:
        ordering = ["organization", "user__email"]
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="one_membership_per_org")
        ]

    def __str__(self) -> str:
        return f"{self.user.email} ({self.get_role_display()}) in {self.organization}"

    @property
    def manages(self) -> bool:
        return self.role in MANAGING_ROLES


class InvitationQuerySet(models.QuerySet):
    def pending(self) -> "InvitationQuerySet":
        return self.filter(accepted_at__isnull=True)

    def for_invitee(self, user) -> "InvitationQuerySet":
        """A person's pending invitations, from every organization (read unscoped: the
        person is not a member of those organizations yet)."""
        return self.pending().filter(user=user).select_related("organization", "invited_by")


class Invitation(models.Model):
    """An organization asks a person to join it with a role. Nothing of the person belongs
    to the organization until they accept: then the invitation becomes a Membership
    (``accepted_at`` is set). A declined invitation is deleted; the trail keeps only that it
    was declined."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="invitations"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="invitations"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(default=timezone.now)
    accepted_at = models.DateTimeField(null=True, blank=True)

    objects = ScopedManager(
        organization="organization",
        _manager_class=models.Manager.from_queryset(InvitationQuerySet),
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "organization"],
                condition=Q(accepted_at__isnull=True),
                name="one_pending_invitation_per_org",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user.email} invited to {self.organization} ({self.get_role_display()})"


class ApiTokenQuerySet(models.QuerySet):
    def active(self) -> "ApiTokenQuerySet":
        return self.filter(revoked_at__isnull=True)


class ApiToken(models.Model):
    """An organization's API token. Only a SHA-256 digest of the secret is stored: the
    secret is 256 random bits, so a fast digest is enough (no password stretching) and a
    database leak reveals no usable token."""

    PREFIX = "chs_"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What uses it, e.g. 'training pipeline'.")
    key_prefix = models.CharField(
        max_length=16, editable=False, help_text="The first characters, to recognise it."
    )
    key_digest = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ScopedManager(
        organization="organization", _manager_class=models.Manager.from_queryset(ApiTokenQuerySet)
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"

    @staticmethod
    def digest(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    # How often last_used_at is written: once a minute is precise enough for "is this token
    # still used?" and keeps a busy pipeline from writing on every request.
    LAST_USED_RESOLUTION = timedelta(minutes=1)

    def touch(self) -> bool:
        """Note the token's use; True when this call wrote it (at most once a minute)."""
        now = timezone.now()
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - self.LAST_USED_RESOLUTION)
        tokens = ApiToken.objects.with_scopes_disabled().filter(stale, pk=self.pk)
        return tokens.update(last_used_at=now) == 1


def last_used(memberships: list[Membership]) -> Membership:
    """Of a person's memberships (by name), the one whose organization they chose last; if
    they never chose one, the first. Where a log-in lands and is recorded."""
    used = [m for m in memberships if m.last_used_at is not None]
    return max(used, key=lambda m: m.last_used_at) if used else memberships[0]
