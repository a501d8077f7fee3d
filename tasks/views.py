"""The organization's own pages: a project's detail page, switching organization, the
security page (who has two-factor authentication) and the audit trail with its
downloads; and a person's own invitations to join organizations. The annotator's project
list is ``annotation.views.home``."""

from allauth.mfa.models import Authenticator
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from tasks import services
from tasks.audit import Action, AuditEventFilter, export_lines, record
from tasks.audit.chain import verify
from tasks.decorators import membership_required
from tasks.models import AuditEvent, Membership, Organization, Project, Role
from tasks.tenancy import get_for_organization_or_404, invitations_of, select_organization


@membership_required
def project_detail(request, project_id: int):
    project = get_for_organization_or_404(
        Project.objects.for_member(request.membership), request, pk=project_id
    )
    return render(request, "tasks/project_detail.html", {"project": project})


@login_required
@require_POST
def switch_organization(request):
    try:
        organization_id = int(request.POST.get("organization", ""))
    except ValueError:
        organization_id = -1
    select_organization(request, organization_id)
    return redirect("annotation:home")


@login_required
def invitations(request):
    """The invitations waiting for the person's answer; a POST accepts or declines one
    (``invitation``: its id, ``answer``: accept or decline). Only the person's own pending
    invitations can be answered: any other id is a 404."""
    waiting = invitations_of(request.user)
    if request.method != "POST":
        return render(request, "tasks/invitations.html", {"invitations": waiting})
    invitation = next((i for i in waiting if str(i.pk) == request.POST.get("invitation")), None)
    if invitation is None:
        raise Http404("No such invitation.")
    name = invitation.organization.name
    answer = request.POST.get("answer")
    if answer == "accept":
        services.accept_invitation(invitation=invitation)
        select_organization(request, invitation.organization_id)
        messages.success(request, f"You are a member of {name} now, and working there.")
        return redirect("annotation:home")
    if answer == "decline":
        services.decline_invitation(invitation=invitation)
        messages.info(request, f"You declined the invitation to {name}.")
        return redirect("tasks:invitations")
    return HttpResponseBadRequest("Answer accept or decline.")


def _audit_events(request):
    """The organization's trail filtered by the request's query (leads and admins only),
    and the filter with its form; unknown parameters play no part."""
    if not request.membership.manages:
        raise PermissionDenied("The audit trail is for project leads and admins.")
    events = AuditEvent.objects.filter(organization=request.organization)
    filtered = AuditEventFilter(request.GET, queryset=events)
    return filtered


@membership_required
def audit_trail(request):
    filtered = _audit_events(request)
    valid = filtered.is_valid()
    events = filtered.qs if valid else filtered.queryset.none()
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    for event in page.object_list:
        event.label = Action.LABELS.get(event.action, event.action)
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "tasks/audit.html",
        {
            "filter": filtered,
            "page": page,
            "query": query.urlencode(),
            "last_check": _last_verification(request.organization),
        },
    )


def _last_verification(organization):
    """The newest "Verify" of the organization's trail, as the trail itself recorded it."""
    return (
        AuditEvent.objects.filter(organization=organization, action=Action.AUDIT_VERIFIED)
        .order_by("-sequence")
        .first()
    )


@membership_required
@require_POST
def audit_verify(request):
    """Check the organization's hash chain now; the outcome is an event of the trail, which
    the audit page shows above the entries."""
    if not request.membership.manages:
        raise PermissionDenied("The audit trail is for project leads and admins.")
    result = verify(request.organization.pk)
    record(
        Action.AUDIT_VERIFIED,
        organization=request.organization,
        object_type="audit",
        data=result.as_dict(),
    )
    return redirect("tasks:audit")


@membership_required
def audit_export(request, fmt: str):
    filtered = _audit_events(request)
    if not filtered.is_valid():
        return render(
            request,
            "tasks/audit.html",
            {"filter": filtered, "page": None, "query": ""},
            status=400,
        )
    events = filtered.qs.order_by("at", "id")
    record(
        Action.AUDIT_EXPORTED,
        organization=request.organization,
        object_type="audit",
        data={"format": fmt, "filters": {k: v for k, v in request.GET.items() if v}},
    )
    content_type = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    response = StreamingHttpResponse(export_lines(events, fmt), content_type=content_type)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    filename = f"audit-{request.organization.slug}-{stamp}.{fmt}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


@membership_required
def organization_security(request):
    """Two-factor status of every member, and (for the organization's admins) the switch
    that makes it required."""
    if not request.membership.manages:
        raise PermissionDenied("This page is for project leads and admins.")
    organization = request.organization
    may_change = request.membership.role == Role.ADMIN
    if request.method == "POST":
        if not may_change:
            raise PermissionDenied("Only the organization's admins may change this.")
        organization = Organization.objects.get(pk=organization.pk)
        organization.require_mfa = request.POST.get("require_mfa") == "on"
        organization.save(update_fields=["require_mfa"])
        state = "required" if organization.require_mfa else "no longer required"
        messages.success(request, f"Two-factor authentication is {state} here.")
        return redirect("tasks:organization_security")
    members = list(Membership.objects.select_related("user").order_by("user__email"))
    with_mfa = set(
        Authenticator.objects.filter(
            user__in=[m.user_id for m in members], type=Authenticator.Type.TOTP
        ).values_list("user_id", flat=True)
    )
    rows = [(m, m.user_id in with_mfa) for m in members]
    return render(
        request,
        "tasks/organization_security.html",
        {
            "organization": organization,
            "rows": rows,
            "may_change": may_change,
            "missing": sum(1 for _, has in rows if not has),
        },
    )
