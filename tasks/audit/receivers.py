"""The signal receivers: events for changes that have many doors (the admin, the API and
the commands all pass here). Log-in, log-out and failed log-ins; projects, organizations,
memberships and API tokens as they are saved; background jobs (imports, generations,
exports) when they are asked for and how they end.

Connected once, when ``tasks.apps.TasksConfig.ready`` imports this module; other apps'
jobs connect with ``connect_job`` (``exports.apps``)."""

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from django_scopes import scopes_disabled

from tasks.audit.actions import Action
from tasks.audit.context import User, Who, who_of, who_of_user
from tasks.audit.record import diff, record
from tasks.models import ApiToken, GenerationJob, ImportJob, Membership, Organization, Project

# --- log-in and log-out ----------------------------------------------------------------------


def _organizations_of(user) -> list[int]:
    with scopes_disabled():
        return list(Membership.objects.filter(user=user).values_list("organization_id", flat=True))


def _each_organization(action: str, user, who: Who, data: dict | None = None) -> None:
    """A person's log-in belongs to every organization they work in: each one's leads see
    it. Someone in none is recorded without an organization (superusers see it)."""
    for organization_id in _organizations_of(user) or [None]:
        record(
            action,
            organization=organization_id,
            obj=user,
            object_type="user",
            who=who,
            object_repr=user.email,
            data=data,
        )


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    _each_organization(Action.LOGIN, user, who_of_user(request, user))


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        _each_organization(Action.LOGOUT, user, who_of_user(request, user))


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    """The address tried is kept (never the password). An address that belongs to a person
    is recorded in their organizations, so their leads see attempts on their accounts."""
    email = str(credentials.get("email") or credentials.get("username") or "")[:254]
    who = who_of(request) if request is not None else Who()
    who = Who(None, email or "anonymous", who.ip, who.user_agent)
    user = User.objects.filter(email__iexact=email).first() if email else None
    if user is None:
        record(
            Action.LOGIN_FAILED, organization=None, object_type="user", object_repr=email, who=who
        )
        return
    _each_organization(Action.LOGIN_FAILED, user, who)


# --- rows with many doors ----------------------------------------------------------------------

# The fields of a project whose changes are recorded (and which of them are its questions).
PROJECT_FIELDS = (
    "name",
    "description",
    "status",
    "mode",
    "guidelines",
    "questions",
    "html_layout",
    "annotations_per_item",
    "quota_per_annotator",
    "allow_skip",
    "skip_reason_required",
    "reasoning_required",
    "pairs_per_prompt",
    "candidate_fields",
    "annotator_access",
    "agreement_sample_percent",
    "agreement_sample_annotations",
    "assignment_timeout_minutes",
    "reasoning_min_length",
    "gold_rate_percent",
    "discussion_visible_to_annotators",
)
SCHEMA_FIELDS = {"questions", "mode", "html_layout"}


def _values(instance, fields) -> dict:
    return {f: getattr(instance, f, None) for f in fields if hasattr(instance, f)}


def _before(sender, instance, fields) -> dict | None:
    if instance.pk is None:
        return None
    with scopes_disabled():
        old = sender._default_manager.filter(pk=instance.pk).first()
    return _values(old, fields) if old is not None else None


def _changes(instance, fields) -> dict:
    """What changed in ``fields`` since the pre_save receiver read the row (_before)."""
    return diff(getattr(instance, "_audit_before", None) or {}, _values(instance, fields))


@receiver(pre_save, sender=Project)
def _project_before(sender, instance, **kwargs):
    instance._audit_before = _before(sender, instance, PROJECT_FIELDS)


@receiver(post_save, sender=Project)
def _project_saved(sender, instance, created, **kwargs):
    if created:
        record(
            Action.PROJECT_CREATED,
            organization=instance.organization_id,
            obj=instance,
            changes=diff({}, _values(instance, PROJECT_FIELDS)),
        )
        return
    changes = _changes(instance, PROJECT_FIELDS)
    if changes:
        schema = bool(SCHEMA_FIELDS & set(changes))
        action = Action.PROJECT_SCHEMA_CHANGED if schema else Action.PROJECT_UPDATED
        record(action, organization=instance.organization_id, obj=instance, changes=changes)


@receiver(post_delete, sender=Project)
def _project_deleted(sender, instance, **kwargs):
    record(Action.PROJECT_DELETED, organization=instance.organization_id, obj=instance)


ORGANIZATION_FIELDS = ("name", "slug", "require_mfa")


@receiver(pre_save, sender=Organization)
def _organization_before(sender, instance, **kwargs):
    instance._audit_before = _before(sender, instance, ORGANIZATION_FIELDS)


@receiver(post_save, sender=Organization)
def _organization_saved(sender, instance, created, **kwargs):
    changes = _changes(instance, ORGANIZATION_FIELDS)
    if not created and changes:
        record(Action.ORGANIZATION_UPDATED, organization=instance, obj=instance, changes=changes)


def _member_repr(membership: Membership) -> str:
    return membership.user.email


@receiver(pre_save, sender=Membership)
def _membership_before(sender, instance, **kwargs):
    instance._audit_before = _before(sender, instance, ("role",))


@receiver(post_save, sender=Membership)
def _membership_saved(sender, instance, created, **kwargs):
    if created:
        record(
            Action.MEMBER_ADDED,
            organization=instance.organization_id,
            obj=instance,
            object_repr=_member_repr(instance),
            changes={"role": [None, instance.role]},
        )
        return
    changes = _changes(instance, ("role",))
    if changes:
        record(
            Action.MEMBER_ROLE_CHANGED,
            organization=instance.organization_id,
            obj=instance,
            object_repr=_member_repr(instance),
            changes=changes,
        )


@receiver(post_delete, sender=Membership)
def _membership_deleted(sender, instance, **kwargs):
    record(
        Action.MEMBER_REMOVED,
        organization=instance.organization_id,
        obj=instance,
        object_repr=_member_repr(instance),
        changes={"role": [instance.role, None]},
    )


@receiver(post_save, sender=ApiToken)
def _token_saved(sender, instance, created, **kwargs):
    if created:
        record(
            Action.TOKEN_CREATED,
            organization=instance.organization_id,
            obj=instance,
            data={"name": instance.name, "prefix": instance.key_prefix},
        )


# --- background jobs ---------------------------------------------------------------------------

# Background jobs (imports, generations, exports): when they are asked for and how they
# end. Status changes are saved with save(update_fields=[..., "status", ...]); progress
# counters go through update() and are not events. What each kind records besides its
# state and error is its own ``audit_facts()``.
RECORDED_ENDS = {"succeeded", "failed", "cancelling", "cancelled"}


def _status_saved(update_fields) -> bool:
    return update_fields is None or "status" in update_fields


def job_before(sender, instance, update_fields=None, **kwargs):
    if instance.pk is not None and _status_saved(update_fields):
        instance._audit_before = _before(sender, instance, ("status",))


def job_saved(sender, instance, created, update_fields=None, **kwargs):
    kind = {ImportJob: "import", GenerationJob: "generation"}.get(sender) or "export"
    base = {"project": instance.project_id}
    if created:
        record(
            f"{kind}.created",
            organization=instance.organization_id,
            obj=instance,
            object_type=kind,
            data={**base, **instance.audit_facts()},
        )
        return
    before = (getattr(instance, "_audit_before", None) or {}).get("status")
    if _status_saved(update_fields) and instance.status in RECORDED_ENDS:
        if before == instance.status:
            return  # saved again without a change (a cancel of a finished job, say)
        data = {**base, **instance.audit_facts()}
        # An import's problems are its list of errors (the first five are kept).
        error = instance.error or getattr(instance, "errors", None)
        if error:
            data["error"] = error if isinstance(error, str) else error[:5]
        record(
            f"{kind}.{instance.status}",
            organization=instance.organization_id,
            obj=instance,
            object_type=kind,
            data=data,
        )


def connect_job(model, kind: str) -> None:
    pre_save.connect(job_before, sender=model, dispatch_uid=f"audit-{kind}-job-before")
    post_save.connect(job_saved, sender=model, dispatch_uid=f"audit-{kind}-job")


connect_job(ImportJob, "import")
connect_job(GenerationJob, "generation")
