from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from tasks.models import Project
from tasks.tenancy import get_for_organization_or_404, select_organization


def membership_required(view):
    """Logged in and a member of some organization; otherwise the log-in page or a page
    that says whom to ask for access."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.membership is None:
            return render(request, "tasks/no_organization.html", status=403)
        return view(request, *args, **kwargs)

    return wrapper


def lead_project(request, project_id: int) -> Project:
    """A project of the current organization, for its leads and admins: annotators get a
    403, another organization's project is a 404."""
    if not request.membership.manages:
        raise PermissionDenied("This page is for project leads.")
    project = Project.objects.get_for_member(request.membership, project_id)
    if project is None:
        raise Http404("No such project.")
    return project


@membership_required
def home(request):
    from annotation.workspace import project_rows

    projects = list(Project.objects.for_member(request.membership).order_by("name"))
    return render(
        request, "tasks/project_list.html", {"rows": project_rows(projects, request.user)}
    )


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
    return redirect("tasks:home")
