from django.contrib.admin.apps import AdminConfig


class ChosenAdminConfig(AdminConfig):
    """django.contrib.admin whose default site lets project leads in, scoped to their org."""

    default_site = "tasks.admin_site.OrganizationAdminSite"
