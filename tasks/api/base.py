"""The base every Chosen API viewset and router derives from.

The pieces DRF loads from settings live in modules of their own (DRF imports them while
its views module is still loading): permissions.py, pagination.py, filters.py, errors.py."""

from rest_framework import exceptions, routers, viewsets

from tasks.models import Membership, Project
from tasks.tenancy import get_for_organization_or_404


class OrganizationViewSet(viewsets.GenericViewSet):
    """Base of every API viewset. The queryset is derived from the caller's organization
    in ``get_organization_queryset``; ``queryset`` stays empty so nothing is listed by
    accident."""

    def get_queryset(self):
        return self.get_organization_queryset().filter(organization=self.request.organization)

    def get_organization_queryset(self):
        raise exceptions.APIException("get_organization_queryset is not defined.")

    def project(self) -> Project | None:
        """The project the URL names (``project_id``), of the caller's organization (another
        organization's: 404); None on a route without one."""
        if "project_id" not in self.kwargs:
            return None
        return get_for_organization_or_404(
            Project.objects.all(), self.request, pk=self.kwargs["project_id"]
        )

    @property
    def caller_membership(self) -> Membership | None:
        return self.request.membership


class Router(routers.DefaultRouter):
    """A router whose URLs work with and without the trailing slash, so
    ``POST /api/v1/projects/1/generation-jobs`` needs no redirect."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.trailing_slash = "/?"
