"""The audit trail: who did what to which object, when and from where.

Our own small model (``tasks.models.AuditEvent``) rather than django-auditlog or
django-simple-history. Both record model rows as they are saved; what a lead needs to read
is events — a log-in that failed, a file downloaded, a judgment undone, an export made —
most of which change no row or change rows through ``QuerySet.update``, which neither
library sees. Each event must also belong to one organization, so a lead can browse only
theirs through the same django-scopes filter as everything else; the libraries keep no
tenant and would need a JSON lookup on every query. And append-only has to hold in the
database itself (a trigger), not only in the admin.

Two ways events are written:
- signal receivers, for changes that have many doors (memberships, projects, tokens, jobs;
  log-in and log-out): the admin, the API and the commands all pass there;
- ``record(...)`` called by the services where the event is a decision of the service
  (a judgment submitted, edited or undone; an adjudication; a file downloaded).

Who and from where come from the request being served (``OrganizationMiddleware`` opens
``request_context``), or, in a Celery job or a command, are "system".

What lives where:
- ``actions``: the catalogue of actions (``Action``, with the words a lead reads) and
  ``action_choices``;
- ``context``: who is acting (``Who``, ``who_of``, ``who_of_user``, ``client_ip``) and the
  context that says so (``request_context``, ``acting_as``, ``current``);
- ``record``: writing events (``record``, ``diff``) and the writers no signal triggers
  (``record_revocations``, ``record_token_use``);
- ``receivers``: the signal receivers (log-in/out/failed; projects, organizations,
  memberships, tokens; jobs via ``connect_job``), connected once when
  ``tasks.apps.TasksConfig.ready`` imports the module;
- ``chain``: the hash chain PostgreSQL writes on insert, and ``verify`` that checks it
  (``manage.py verify_audit``, the lead's Verify);
- ``reading``: the filter (``AuditEventFilter``), the columns every reader shows
  (``COLUMNS``) and the CSV / JSON Lines download (``export_lines``).

The names other modules use are importable from ``tasks.audit``.
"""

from tasks.audit.actions import Action, action_choices
from tasks.audit.context import Who, acting_as, current, request_context, who_of
from tasks.audit.reading import COLUMNS, AuditEventFilter, as_record, export_lines
from tasks.audit.receivers import connect_job, record_job_requeued
from tasks.audit.record import diff, record, record_revocations, record_token_use

__all__ = [
    "COLUMNS",
    "Action",
    "AuditEventFilter",
    "Who",
    "acting_as",
    "action_choices",
    "as_record",
    "connect_job",
    "current",
    "diff",
    "export_lines",
    "record",
    "record_job_requeued",
    "record_revocations",
    "record_token_use",
    "request_context",
    "who_of",
]
