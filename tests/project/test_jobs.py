import pytest
from django_scopes import get_scope

from project.celery import app
from tasks.jobs import OrganizationTask
from tasks.models import Project


@app.task(base=OrganizationTask, bind=True, name="tests.count_projects")
def count_projects(self, organization_id):
    assert get_scope()["organization"].pk == organization_id
    return Project.objects.count()


@pytest.mark.django_db
def test_organization_job_runs_inside_its_organizations_scope(acme, globex):
    # apply() runs the job body in this process exactly as a worker would.
    assert count_projects.apply(args=[acme.organization.pk]).get() == 1
    assert count_projects.apply(args=[globex.organization.pk]).get() == 1
    assert "organization" not in get_scope()  # the scope ends with the job
