"""What every page of the product checks before its view runs: a member of an
organization (``membership_required``), and a lead's or admin's project
(``lead_project``). Each app's views import these; they import nothing above ``tasks``.
(healthchecks keeps its equivalents in one small ``hc/api/decorators.py``.)"""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import render

from tasks.models import Project


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
