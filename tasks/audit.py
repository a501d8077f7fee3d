"""The audit trail: who did what to which object, when and from where.

Our own small model (``tasks.models.AuditEvent``) rather than django-auditlog or
django-simple-history. Both record model rows as they are saved; what a lead needs to read
is events — a log-in that failed, a file downloaded, a judgment undone, an export made —
most of which change no row or change rows through ``QuerySet.update``, which neither
library sees. Each event must also belong to one organization, so a lead can browse only
theirs through the same django-scopes filter as everything else; the libraries keep no
tenant and would need a JSON lookup on every query. And append-only has to hold in the
database itself (a trigger), not only in the admin.

Two ways events are written:
- signal receivers below, for changes that have many doors (memberships, projects,
  tokens, jobs; log-in and log-out): the admin, the API and the commands all pass here;
- ``record(...)`` called by the services where the event is a decision of the service
  (a judgment submitted, edited or undone; an adjudication; a file downloaded).

Who and from where come from the request being served (``OrganizationMiddleware`` opens
``request_context``), or, in a Celery job or a command, are "system".
"""

import contextlib
import contextvars
import ipaddress
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from django.utils import timezone
from django_scopes import scopes_disabled

from tasks.models import (
    ApiToken,
    AuditEvent,
    GenerationJob,
    ImportJob,
    Membership,
    Organization,
    Project,
)

User = get_user_model()


class Action:
    """Every action the trail knows, with the words a lead reads."""

    LOGIN = "auth.login"
    LOGOUT = "auth.logout"
    LOGIN_FAILED = "auth.login_failed"
    MEMBER_ADDED = "member.added"
    MEMBER_ROLE_CHANGED = "member.role_changed"
    MEMBER_REMOVED = "member.removed"
    PROJECT_CREATED = "project.created"
    PROJECT_UPDATED = "project.updated"
    PROJECT_SCHEMA_CHANGED = "project.schema_changed"
    PROJECT_DELETED = "project.deleted"
    ORGANIZATION_UPDATED = "organization.updated"
    IMPORT_STARTED = "import.created"
    IMPORT_SUCCEEDED = "import.succeeded"
    IMPORT_FAILED = "import.failed"
    GENERATION_STARTED = "generation.created"
    GENERATION_SUCCEEDED = "generation.succeeded"
    GENERATION_FAILED = "generation.failed"
    GENERATION_CANCELLING = "generation.cancelling"
    GENERATION_CANCELLED = "generation.cancelled"
    GENERATION_RESUMED = "generation.resumed"
    JUDGMENT_CREATED = "judgment.created"
    JUDGMENT_EDITED = "judgment.edited"
    JUDGMENT_UNDONE = "judgment.undone"
    ADJUDICATION_DECIDED = "adjudication.decided"
    GOLD_SET = "item.gold_set"
    EXPORT_CREATED = "export.created"
    EXPORT_SUCCEEDED = "export.succeeded"
    EXPORT_FAILED = "export.failed"
    EXPORT_DOWNLOADED = "export.downloaded"
    TOKEN_CREATED = "token.created"
    TOKEN_USED = "token.used"
    TOKEN_REVOKED = "token.revoked"
    AUDIT_EXPORTED = "audit.exported"

    LABELS = {
        LOGIN: "Logged in",
        LOGOUT: "Logged out",
        LOGIN_FAILED: "Log-in failed",
        MEMBER_ADDED: "Member added",
        MEMBER_ROLE_CHANGED: "Role changed",
        MEMBER_REMOVED: "Member removed",
        PROJECT_CREATED: "Project created",
        PROJECT_UPDATED: "Project changed",
        PROJECT_SCHEMA_CHANGED: "Questions changed",
        PROJECT_DELETED: "Project deleted",
        ORGANIZATION_UPDATED: "Organization changed",
        IMPORT_STARTED: "Import started",
        IMPORT_SUCCEEDED: "Import succeeded",
        IMPORT_FAILED: "Import failed",
        GENERATION_STARTED: "Generation started",
        GENERATION_SUCCEEDED: "Generation succeeded",
        GENERATION_FAILED: "Generation failed",
        GENERATION_CANCELLING: "Generation cancel asked",
        GENERATION_CANCELLED: "Generation cancelled",
        GENERATION_RESUMED: "Generation resumed",
        JUDGMENT_CREATED: "Judgment submitted",
        JUDGMENT_EDITED: "Judgment edited",
        JUDGMENT_UNDONE: "Judgment undone",
        ADJUDICATION_DECIDED: "Disagreement decided",
        GOLD_SET: "Gold answer set",
        EXPORT_CREATED: "Export requested",
        EXPORT_SUCCEEDED: "Export written",
        EXPORT_FAILED: "Export failed",
        EXPORT_DOWNLOADED: "Export file downloaded",
        TOKEN_CREATED: "API token created",
        TOKEN_USED: "API token used",
        TOKEN_REVOKED: "API token revoked",
        AUDIT_EXPORTED: "Audit trail exported",
    }


# A token's use is recorded once per this long (with the address it came from); its
# last_used_at is kept to the minute on the token itself.
TOKEN_USE_RESOLUTION = timedelta(hours=1)


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
    from allauth.account.adapter import get_adapter

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


def record(
    action: str,
    *,
    organization: Organization | int | None,
    obj=None,
    object_type: str = "",
    object_id="",
    object_repr: str = "",
    changes: dict | None = None,
    data: dict | None = None,
    who: Who | None = None,
) -> AuditEvent:
    """Append one event. ``obj`` (a model instance) names the object unless the object_*
    arguments do."""
    who = who or current()
    if obj is not None:
        object_type = object_type or obj._meta.model_name
        object_id = object_id or obj.pk
        object_repr = object_repr or str(obj)
    organization_id = getattr(organization, "pk", organization)
    with scopes_disabled():
        return AuditEvent.objects.create(
            organization_id=organization_id,
            actor=who.actor,
            actor_label=who.label[:254],
            action=action,
            object_type=object_type[:64],
            object_id=str(object_id or "")[:64],
            object_repr=(object_repr or "")[:300],
            ip=who.ip,
            user_agent=who.user_agent,
            changes=_jsonable(changes or {}),
            data=_jsonable(data or {}),
        )


def _jsonable(value):
    """Dates, decimals and model ids as JSON can hold them."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def diff(before: dict, after: dict) -> dict:
    """{field: [before, after]} for the fields whose values differ."""
    return {
        field: [before.get(field), after.get(field)]
        for field in sorted(set(before) | set(after))
        if before.get(field) != after.get(field)
    }


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


def who_of_user(request, user) -> Who:
    base = who_of(request) if request is not None else Who()
    return Who(user, user.email or user.get_username(), base.ip, base.user_agent)


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


def record_revocations(token_ids) -> None:
    """Tokens are revoked with one UPDATE (no signal): the service names them here."""
    with scopes_disabled():
        for token in ApiToken.objects.filter(pk__in=list(token_ids)):
            record(
                Action.TOKEN_REVOKED,
                organization=token.organization_id,
                obj=token,
                data={"prefix": token.key_prefix},
            )


def record_token_use(token: ApiToken, previous_use) -> None:
    """The first use of a token in each TOKEN_USE_RESOLUTION, with the caller's address."""
    if previous_use is not None and timezone.now() - previous_use < TOKEN_USE_RESOLUTION:
        return
    record(
        Action.TOKEN_USED,
        organization=token.organization_id,
        obj=token,
        data={"prefix": token.key_prefix},
    )


# Background jobs (imports, generations, exports): when they are asked for and how they
# end. Status changes are saved with save(update_fields=[..., "status", ...]); progress
# counters go through update() and are not events.
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
            data={**base, **_job_facts(instance)},
        )
        return
    before = (getattr(instance, "_audit_before", None) or {}).get("status")
    if _status_saved(update_fields) and instance.status in RECORDED_ENDS:
        if before == instance.status:
            return  # saved again without a change (a cancel of a finished job, say)
        data = {**base, **_job_facts(instance)}
        error = getattr(instance, "error", "") or getattr(instance, "errors", None)
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


def _job_facts(job) -> dict:
    if isinstance(job, ImportJob):
        return {
            "kind": job.kind,
            "files": [f.get("name") for f in job.files],
            "bytes": job.total_bytes,
            **({"report": job.report} if job.report else {}),
        }
    if isinstance(job, GenerationJob):
        return {
            "endpoint": job.endpoint_id,
            "model": job.model,
            "recipe": job.recipe_name,
            "done": job.done,
            "failed": job.failed,
            "total": job.total,
        }
    return {"format": job.format, "options": job.options, "counts": job.counts}


connect_job(ImportJob, "import")
connect_job(GenerationJob, "generation")


def action_choices() -> list[tuple[str, str]]:
    return sorted(Action.LABELS.items(), key=lambda pair: pair[1])


# --- reading the trail: one filter for the page, its downloads and the API ------------------


def event_filter():
    """The FilterSet of the trail (built on first use: django-filter must not load while
    the app registry is still being populated)."""
    import django_filters
    from django import forms

    DATE = forms.DateInput(attrs={"type": "date"})

    class AuditEventFilter(django_filters.FilterSet):
        actor = django_filters.CharFilter(
            field_name="actor_label", lookup_expr="icontains", label="Who"
        )
        action = django_filters.ChoiceFilter(choices=action_choices(), label="Action")
        object_type = django_filters.CharFilter(label="Object type")
        object_id = django_filters.CharFilter(label="Object id")
        since = django_filters.DateFilter(
            field_name="at", lookup_expr="date__gte", label="From", widget=DATE
        )
        until = django_filters.DateFilter(
            field_name="at", lookup_expr="date__lte", label="Until", widget=DATE
        )

        class Meta:
            model = AuditEvent
            fields = ["actor", "action", "object_type", "object_id", "since", "until"]

    return AuditEventFilter


EXPORT_COLUMNS = [
    "id",
    "at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "object",
    "ip",
    "user_agent",
    "changes",
    "data",
]


def as_record(event: AuditEvent) -> dict:
    return {
        "id": event.pk,
        "at": event.at.isoformat(),
        "actor": event.actor_label,
        "actor_id": event.actor_id,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object": event.object_repr,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "changes": event.changes,
        "data": event.data,
    }


def export_lines(events, fmt: str):
    """The events as CSV or JSON Lines, one line at a time (streamed: a trail can be long).
    CSV cells that a spreadsheet would run as a formula are made plain text."""
    import csv
    import io
    import json

    from tasks.csvsafe import spreadsheet_cell

    if fmt == "jsonl":
        for event in events.iterator(chunk_size=2000):
            yield json.dumps(as_record(event), ensure_ascii=False, sort_keys=True) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(row):
        writer.writerow(row)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(EXPORT_COLUMNS)
    for event in events.iterator(chunk_size=2000):
        record_ = as_record(event)
        yield line(
            [
                record_["id"],
                record_["at"],
                spreadsheet_cell(record_["actor"]),
                record_["action"],
                record_["object_type"],
                spreadsheet_cell(record_["object_id"]),
                spreadsheet_cell(record_["object"]),
                record_["ip"] or "",
                spreadsheet_cell(record_["user_agent"]),
                spreadsheet_cell(json.dumps(record_["changes"], ensure_ascii=False)),
                spreadsheet_cell(json.dumps(record_["data"], ensure_ascii=False)),
            ]
        )
