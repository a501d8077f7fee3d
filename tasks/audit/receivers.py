"""The signal receivers: events for changes that have many doors (the admin, the API and
the commands all pass here). Log-in, log-out and failed log-ins; passwords changed, set and
reset (allauth's signals); projects (their chosen annotators too), organizations,
memberships, generation recipes and API tokens as they are saved; background jobs
(imports, generations, exports) when they are asked for and how they end.

Connected once, when ``tasks.apps.TasksConfig.ready`` imports this module; other apps'
jobs connect with ``connect_job`` (``exports.apps``)."""

from allauth.account.signals import password_changed, password_reset, password_set
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import receiver
from django_scopes import scopes_disabled

from tasks.audit.actions import Action
from tasks.audit.context import User, Who, who_of, who_of_user
from tasks.audit.record import diff, record
from tasks.models import (
    ApiToken,
    GenerationJob,
    GenerationRecipe,
    ImportJob,
    Membership,
    Organization,
    Project,
)
from tasks.models.organizations import last_used
from tasks.models.projects import SCHEMA_FIELDS

# --- log-in and log-out ----------------------------------------------------------------------


def _organization_in_use(request, user) -> int | None:
    """The one organization a person's log-in event belongs to: the one they are working
    in (the session's, as ``OrganizationMiddleware`` resolved it), or, when none is chosen
    yet (a log-in, a failed log-in), the one they last used — where the log-in lands
    (``tasks.models.organizations.last_used``). None for someone in no organization (superusers see
    those). Never every organization they belong to: the others learn nothing of when and
    from where the person works elsewhere."""
    membership = getattr(request, "membership", None) if request is not None else None
    if membership is not None and membership.user_id == user.pk:
        return membership.organization_id
    with scopes_disabled():
        memberships = list(Membership.objects.filter(user=user).by_name())
    return last_used(memberships).organization_id if memberships else None


def _record_for_user(action: str, request, user, who: Who) -> None:
    record(
        action,
        organization=_organization_in_use(request, user),
        obj=user,
        object_type="user",
        who=who,
        object_repr=user.email,
    )


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    _record_for_user(Action.LOGIN, request, user, who_of_user(request, user))


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        _record_for_user(Action.LOGOUT, request, user, who_of_user(request, user))


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    """The address tried is kept (never the password). An address that belongs to a person
    is recorded in the organization they last used (where a log-in would land), so the
    leads who rely on that account see attempts on it; no other organization does."""
    email = str(credentials.get("email") or credentials.get("username") or "")[:254]
    who = who_of(request) if request is not None else Who()
    who = Who(None, email or "anonymous", who.ip, who.user_agent)
    user = User.objects.filter(email__iexact=email).first() if email else None
    if user is None:
        record(
            Action.LOGIN_FAILED, organization=None, object_type="user", object_repr=email, who=who
        )
        return
    # The attempt is not the person's: the session's organization plays no part.
    _record_for_user(Action.LOGIN_FAILED, None, user, who)


# --- passwords -------------------------------------------------------------------------------
# allauth's signals (allauth.account.signals, 65.x: sender=the user class, request, user):
# a password changed on the account page, set where there was none, reset through the
# e-mailed link. The person's event, recorded where their log-ins are (never the password).


@receiver(password_changed)
def _password_changed(sender, request, user, **kwargs):
    _record_for_user(Action.PASSWORD_CHANGED, request, user, who_of_user(request, user))


@receiver(password_set)
def _password_set(sender, request, user, **kwargs):
    _record_for_user(Action.PASSWORD_SET, request, user, who_of_user(request, user))


@receiver(password_reset)
def _password_reset(sender, request, user, **kwargs):
    _record_for_user(Action.PASSWORD_RESET, request, user, who_of_user(request, user))


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
    "schema_version",
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
    "id_key",
    "text_key",
)


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
        schema = bool(set(SCHEMA_FIELDS) & set(changes))
        action = Action.PROJECT_SCHEMA_CHANGED if schema else Action.PROJECT_UPDATED
        record(action, organization=instance.organization_id, obj=instance, changes=changes)


@receiver(post_delete, sender=Project)
def _project_deleted(sender, instance, **kwargs):
    record(Action.PROJECT_DELETED, organization=instance.organization_id, obj=instance)


def _annotators_of(project: Project) -> dict[int, str]:
    """The people chosen to work on the project: {user id: e-mail}."""
    with scopes_disabled():
        return dict(project.annotators.values_list("pk", "email"))


@receiver(m2m_changed, sender=Project.annotators.through)
def _project_annotators_changed(sender, instance, action, reverse, **kwargs):
    """Who may work on a project (its chosen annotators): the admin's form sets them after
    the project is saved, through add/remove/clear, none of which is a save of the project.
    Read before, recorded after with both lists; a set() that removes and adds is two
    events. (The user side has no accessor, related_name="+", so ``reverse`` never comes.)"""
    if reverse:
        return
    if action in ("pre_add", "pre_remove", "pre_clear"):
        instance._audit_annotators = _annotators_of(instance)
        return
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    before = getattr(instance, "_audit_annotators", None) or {}
    after = _annotators_of(instance)
    if before == after:
        return
    record(
        Action.PROJECT_ANNOTATORS_CHANGED,
        organization=instance.organization_id,
        obj=instance,
        changes={"annotators": [sorted(before.values()), sorted(after.values())]},
        data={
            "added": sorted(set(after) - set(before)),
            "removed": sorted(set(before) - set(after)),
        },
    )


# A generation recipe's system prompts and sampling settings decide what the candidates
# say: every version is kept.
RECIPE_FIELDS = ("name", "variants")


@receiver(pre_save, sender=GenerationRecipe)
def _recipe_before(sender, instance, **kwargs):
    instance._audit_before = _before(sender, instance, RECIPE_FIELDS)


@receiver(post_save, sender=GenerationRecipe)
def _recipe_saved(sender, instance, created, **kwargs):
    if created:
        changes = diff({}, _values(instance, RECIPE_FIELDS))
        record(
            Action.RECIPE_CREATED,
            organization=instance.organization_id,
            obj=instance,
            changes=changes,
        )
        return
    changes = _changes(instance, RECIPE_FIELDS)
    if changes:
        record(
            Action.RECIPE_UPDATED,
            organization=instance.organization_id,
            obj=instance,
            changes=changes,
        )


@receiver(post_delete, sender=GenerationRecipe)
def _recipe_deleted(sender, instance, **kwargs):
    record(
        Action.RECIPE_DELETED,
        organization=instance.organization_id,
        obj=instance,
        changes=diff(_values(instance, RECIPE_FIELDS), {}),
    )


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


@receiver(pre_save, sender=ApiToken)
def _token_before(sender, instance, update_fields=None, **kwargs):
    # Only its name is ever changed by a save (use and revocation are UPDATEs).
    saves_name = update_fields is None or "name" in update_fields
    instance._audit_before = _before(sender, instance, ("name",)) if saves_name else None


@receiver(post_save, sender=ApiToken)
def _token_saved(sender, instance, created, **kwargs):
    if created:
        record(
            Action.TOKEN_CREATED,
            organization=instance.organization_id,
            obj=instance,
            data={"name": instance.name, "prefix": instance.key_prefix},
        )
        return
    saved_name = getattr(instance, "_audit_before", None) is not None
    changes = _changes(instance, ("name",)) if saved_name else {}
    if changes:
        record(
            Action.TOKEN_RENAMED,
            organization=instance.organization_id,
            obj=instance,
            changes=changes,
            data={"prefix": instance.key_prefix},
        )


# --- background jobs ---------------------------------------------------------------------------

# Background jobs (imports, generations, exports, QC reports): when they are asked for and how they
# end. Status changes are saved with save(update_fields=[..., "status", ...]); progress
# counters go through update() and are not events. What each kind records besides its
# state and error is its own ``audit_facts()``.
RECORDED_ENDS = {"succeeded", "failed", "cancelling", "cancelled"}


def _status_saved(update_fields) -> bool:
    return update_fields is None or "status" in update_fields


def job_before(sender, instance, update_fields=None, **kwargs):
    if instance.pk is not None and _status_saved(update_fields):
        instance._audit_before = _before(sender, instance, ("status",))


_KINDS: dict = {}  # model → its kind on the trail ("import", "export", …), by connect_job


def job_saved(sender, instance, created, update_fields=None, **kwargs):
    kind = _KINDS[sender]
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


def record_job_requeued(job, *, attempt: int, silent_since) -> None:
    """A running job queued again by beat's sweeper because its worker went silent (it is
    saved with update(), so no signal tells)."""
    kind = _KINDS[type(job)]
    record(
        f"{kind}.requeued",
        organization=job.organization_id,
        obj=job,
        object_type=kind,
        data={
            "project": job.project_id,
            "attempt": attempt,
            "silent_since": silent_since.isoformat() if silent_since else None,
        },
    )


def connect_job(model, kind: str) -> None:
    _KINDS[model] = kind
    pre_save.connect(job_before, sender=model, dispatch_uid=f"audit-{kind}-job-before")
    post_save.connect(job_saved, sender=model, dispatch_uid=f"audit-{kind}-job")


connect_job(ImportJob, "import")
connect_job(GenerationJob, "generation")
