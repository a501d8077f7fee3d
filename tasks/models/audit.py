"""The audit trail's storage: append-only events (tasks.audit records and reads them)."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django_scopes import ScopedManager

from tasks.models.organizations import Organization


class AuditTrailIsAppendOnly(Exception):
    """Raised on any attempt to change or delete an audit event."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditTrailIsAppendOnly("Audit events cannot be changed.")

    def delete(self):
        raise AuditTrailIsAppendOnly("Audit events cannot be deleted.")

    _raw_delete = delete


class AuditEvent(models.Model):
    """Who did what to which object, when and from where. Append-only: the model refuses
    updates and deletes, and on PostgreSQL a trigger refuses them for any SQL too. Each
    organization's events are chained by hash (``tasks.audit.chain``).

    The organization and the actor are kept as plain ids (no database constraint, nothing
    cascades): the trail outlives the people and objects it talks about, and deleting a
    user or an organization never needs to rewrite it. ``actor_label`` keeps who it was
    (an e-mail, ``token:chs_…`` or ``system``) as it was at the time."""

    organization = models.ForeignKey(
        Organization,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_label = models.CharField(max_length=254)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=300, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    changes = models.JSONField(default=dict, blank=True, help_text="{field: [before, after]}")
    data = models.JSONField(default=dict, blank=True)
    # The hash chain (tasks.audit.chain): written by PostgreSQL's trigger on INSERT, never
    # by the application; db_default makes Django read them back from the INSERT.
    sequence = models.BigIntegerField(db_default=0, editable=False)
    previous_hash = models.CharField(max_length=64, db_default="", editable=False)
    hash = models.CharField(max_length=64, db_default="", editable=False)

    objects = ScopedManager(
        organization="organization",
        _manager_class=models.Manager.from_queryset(AuditEventQuerySet),
    )

    class Meta:
        ordering = ["-at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "sequence"],
                name="audit_org_sequence_unique",
                nulls_distinct=False,
            )
        ]
        indexes = [
            models.Index(fields=["organization", "-at"], name="audit_org_at_idx"),
            models.Index(fields=["organization", "action"], name="audit_org_action_idx"),
            models.Index(
                fields=["organization", "object_type", "object_id"], name="audit_org_object_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action} {self.object_repr}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AuditTrailIsAppendOnly("Audit events cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditTrailIsAppendOnly("Audit events cannot be deleted.")
