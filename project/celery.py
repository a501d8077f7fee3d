"""The Celery app. Job modules are named ``jobs.py`` (the app ``tasks`` makes ``tasks.py``
ambiguous), so autodiscovery looks for ``related_name="jobs"``. The base task of an
organization's jobs is ``tasks.jobs.OrganizationTask``: this module imports no app."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("chosen")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(related_name="jobs")
