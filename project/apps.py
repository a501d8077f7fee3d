from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ProjectConfig(AppConfig):
    """The project itself as an app, for what sits above every other app: the demo and its
    ``load_demo`` command (they use every app's services). It has no models."""

    default = True
    name = "project"
    verbose_name = "Chosen"


class ChosenAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin whose default site lets project leads in, scoped to their org."""

    default = False  # INSTALLED_APPS names it; "project" alone means ProjectConfig
    default_site = "tasks.admin_site.OrganizationAdminSite"
