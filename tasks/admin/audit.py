"""Admin for the audit trail (read-only; the full page is /audit/)."""

from django.contrib import admin

from tasks.admin.base import ReadOnlyAdmin
from tasks.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The trail, read-only for everyone (superusers included): no add, change or delete,
    no bulk action. Leads read their organization's; the full page with filters and
    downloads is /audit/."""

    list_display = ["at", "actor_label", "action", "object_type", "object_id", "object_repr", "ip"]
    list_filter = ["action", "object_type"]
    search_fields = ["actor_label", "object_repr", "object_id"]
    date_hierarchy = "at"
