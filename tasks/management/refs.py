"""ORG/PROJECT, as the management commands name a project."""

from django.core.management.base import CommandError
from django_scopes import scope

from tasks.models import Organization, Project


def project_from_ref(ref: str) -> Project:
    """The project named by "ORG/PROJECT" (organization slug; project name or id), or
    CommandError saying what was not found."""
    org_slug, _, project_ref = ref.partition("/")
    org = Organization.objects.filter(slug=org_slug).first()
    if org is None or not project_ref:
        raise CommandError(f"Give ORG/PROJECT; no organization {org_slug!r}.")
    with scope(organization=org):
        lookup = {"pk": int(project_ref)} if project_ref.isdigit() else {"name": project_ref}
        project = Project.objects.filter(**lookup).first()
    if project is None:
        raise CommandError(f"No project {project_ref!r} in {org.name}.")
    return project
