"""The bases of Chosen's model admins: the organization scope, the job admins, and how
people are shown in pickers."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.http import Http404

from tasks.admin_site import manages_current_organization
from tasks.models import Organization

User = get_user_model()


class OrganizationScopedAdmin(admin.ModelAdmin):
    """The base of every admin for a tenant-owned model.

    Rows come through the model's scoped manager, so a lead sees only the current
    organization's; foreign-key pickers offer only that organization's objects (and its
    members for user fields); the organization field is fixed to the current one. Leads and
    admins of the organization may view and edit; nobody else.
    """

    def _may_manage(self, request) -> bool:
        return request.user.is_superuser or manages_current_organization(request)

    def has_module_permission(self, request) -> bool:
        return self._may_manage(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return self._may_manage(request)

    def has_add_permission(self, request) -> bool:
        return self._may_manage(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return self._may_manage(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._may_manage(request)

    def get_object(self, request, object_id, from_field=None):
        # Django redirects to the index for a missing object; another organization's id
        # must look exactly like one that does not exist: a 404.
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such object.")
        return obj

    def get_list_display(self, request):
        columns = list(super().get_list_display(request))
        if request.user.is_superuser and "organization" not in columns:
            columns.append("organization")
        return columns

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        if request.user.is_superuser:
            filters.append("organization")
        return filters

    # What Django's own list filters and date hierarchy put after a field's path.
    FILTER_TAILS = frozenset({"exact", "isnull", "gte", "lt", "id__exact", "year", "month", "day"})

    def lookup_allowed(self, lookup, value, request) -> bool:
        """Only the lookups this list's filters and date hierarchy make.

        Django's default accepts any lookup on the model's own fields, so a lead could
        filter API tokens by ?key_digest__startswith=… and learn a digest a character at a
        time (CVE-2023-47117); a lookup the page does not offer is a 400 (Django's
        DisallowedModelAdminLookup), whatever its value."""
        paths = [self.date_hierarchy] if self.date_hierarchy else []
        for item in self.get_list_filter(request):
            if isinstance(item, str):
                paths.append(item)
            elif isinstance(item, (tuple, list)):
                paths.append(item[0])
            elif lookup == getattr(item, "parameter_name", None):
                return True
        return any(
            lookup == path
            or (lookup.startswith(f"{path}__") and lookup[len(path) + 2 :] in self.FILTER_TAILS)
            for path in paths
        )

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if not request.user.is_superuser:
            if db_field.related_model is Organization:
                kwargs["queryset"] = Organization.objects.filter(pk=request.organization.pk)
                kwargs["initial"] = request.organization
                kwargs["disabled"] = True
            elif db_field.related_model is User:
                kwargs["queryset"] = _members_of(request.organization)
        return _by_email(super().formfield_for_foreignkey(db_field, request, **kwargs))

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if not request.user.is_superuser and db_field.related_model is User:
            kwargs["queryset"] = _members_of(request.organization)
        return _by_email(super().formfield_for_manytomany(db_field, request, **kwargs))


class ReadOnlyAdmin(OrganizationScopedAdmin):
    """Rows nobody adds, changes or deletes by hand (the audit trail; what the pair builder
    made): the lists and pages, scoped as any admin, with no bulk action."""

    actions = None

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class OrganizationJobAdmin(OrganizationScopedAdmin):
    """The base of the admins of background jobs (tasks.models.OrganizationJob). Jobs are
    started from their pages or the API, not added or edited here; a failed one reads
    "Failed: <reason>" in the list and on its page, never just "failed"."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Status", ordering="status")
    def state(self, job) -> str:
        return job.failure or job.get_status_display()


def _by_email(field):
    """People are known by their e-mail address in Chosen, not by a username."""
    queryset = getattr(field, "queryset", None)
    if queryset is not None and queryset.model is User:
        field.label_from_instance = lambda user: (
            f"{user.get_full_name()} <{user.email}>" if user.get_full_name() else user.email
        )
    return field


def _members_of(organization):
    return User.objects.filter(memberships__organization=organization).order_by("email")
