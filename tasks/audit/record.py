"""Writing the trail: ``record`` appends one event; ``diff`` says what changed; and the
writers for events that no signal sees (tokens revoked with one UPDATE, a token's use)."""

from datetime import timedelta

from django.utils import timezone
from django_scopes import scopes_disabled

from tasks.audit.actions import Action
from tasks.audit.context import Who, current
from tasks.models import ApiToken, AuditEvent, Organization

# A token's use is recorded once per this long (with the address it came from); its
# last_used_at is kept to the minute on the token itself.
TOKEN_USE_RESOLUTION = timedelta(hours=1)


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
