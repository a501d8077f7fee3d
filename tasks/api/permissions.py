"""API permissions. Kept apart from the viewsets: DRF imports its default permission
class while rest_framework.views is still loading."""

from rest_framework import permissions

from tasks.models import Membership


class IsOrganizationMember(permissions.BasePermission):
    """The caller is a member of (or holds a token of) the request's organization.
    Writes additionally need a managing role unless a view says otherwise."""

    message = "You are not a member of an organization."

    def has_permission(self, request, view) -> bool:
        if request.organization is None or not request.user.is_authenticated:
            return False
        if request.auth is not None:  # organization token
            return True
        membership: Membership | None = request.membership
        if request.method in permissions.SAFE_METHODS:
            return membership is not None
        return membership is not None and membership.manages


class ManagesOrganization(IsOrganizationMember):
    """Leads and admins of the organization, or its API token, for reads and writes."""

    message = "Only project leads and admins (or an organization token) may do this."

    def has_permission(self, request, view) -> bool:
        if not super().has_permission(request, view):
            return False
        return request.auth is not None or request.membership.manages
