"""The Celery app. Job modules are named ``jobs.py`` (the app ``tasks`` makes ``tasks.py``
ambiguous), so autodiscovery looks for ``related_name="jobs"``."""

import os

from celery import Celery
from celery.contrib.django.task import DjangoTask

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("chosen")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(related_name="jobs")


class OrganizationTask(DjangoTask):
    """Base for jobs that work on one organization's rows.

    The first argument is the organization id; the job body runs inside that
    organization's scope, so scoped managers filter exactly as they do in a request.
    (pretix's EventTask does the same for events.) DjangoTask adds ``delay_on_commit``.
    """

    abstract = True
    acks_late = True

    def __call__(self, organization_id: int, *args, **kwargs):
        from django_scopes import scope

        from tasks.models import Organization

        organization = Organization.objects.get(pk=organization_id)
        with scope(organization=organization):
            return super().__call__(organization_id, *args, **kwargs)
