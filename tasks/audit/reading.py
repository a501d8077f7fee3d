"""Reading the trail: one filter for the /audit/ page, its downloads and the API; one list
of columns for the API, the JSON Lines and the CSV download."""

import csv
import io
import json

import django_filters
from django import forms

from tasks.audit.actions import action_choices
from tasks.csvsafe import spreadsheet_cell
from tasks.models import AuditEvent

DATE = forms.DateInput(attrs={"type": "date"})


class AuditEventFilter(django_filters.FilterSet):
    actor = django_filters.CharFilter(
        field_name="actor_label", lookup_expr="icontains", label="Who"
    )
    action = django_filters.ChoiceFilter(choices=action_choices(), label="Action")
    object_type = django_filters.CharFilter(label="Object type")
    object_id = django_filters.CharFilter(label="Object id")
    since = django_filters.DateFilter(
        field_name="at", lookup_expr="date__gte", label="From", widget=DATE
    )
    until = django_filters.DateFilter(
        field_name="at", lookup_expr="date__lte", label="Until", widget=DATE
    )

    class Meta:
        model = AuditEvent
        fields = ["actor", "action", "object_type", "object_id", "since", "until"]


# The trail's columns, in order, as every reader names them (the API's fields, the JSON
# Lines keys, the CSV header), each with the AuditEvent attribute it shows.
COLUMNS = {
    "id": "id",
    "at": "at",
    "actor": "actor_label",
    "actor_id": "actor_id",
    "action": "action",
    "object_type": "object_type",
    "object_id": "object_id",
    "object": "object_repr",
    "ip": "ip",
    "user_agent": "user_agent",
    "changes": "changes",
    "data": "data",
}
# The CSV is for people: the actor's e-mail or token says who, without the id.
CSV_COLUMNS = [column for column in COLUMNS if column != "actor_id"]
# In a CSV: the columns written as JSON, and those whose text comes from outside (names,
# addresses, user agents, changed values), where a cell a spreadsheet would run as a
# formula is made plain text.
CSV_JSON = {"changes", "data"}
CSV_PLAIN_TEXT = {"actor", "object_id", "object", "user_agent", "changes", "data"}


def as_record(event: AuditEvent) -> dict:
    record_ = {column: getattr(event, field) for column, field in COLUMNS.items()}
    record_["at"] = event.at.isoformat()
    return record_


def _csv_cell(column: str, value):
    if column in CSV_JSON:
        value = json.dumps(value, ensure_ascii=False)
    if column in CSV_PLAIN_TEXT:
        value = spreadsheet_cell(value)
    return "" if value is None else value


def export_lines(events, fmt: str):
    """The events as CSV or JSON Lines, one line at a time (streamed: a trail can be long).
    CSV cells that a spreadsheet would run as a formula are made plain text."""
    if fmt == "jsonl":
        for event in events.iterator(chunk_size=2000):
            yield json.dumps(as_record(event), ensure_ascii=False, sort_keys=True) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(row):
        writer.writerow(row)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(CSV_COLUMNS)
    for event in events.iterator(chunk_size=2000):
        record_ = as_record(event)
        yield line([_csv_cell(column, record_[column]) for column in CSV_COLUMNS])
