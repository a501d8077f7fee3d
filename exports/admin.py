from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from exports.models import Export
from tasks.admin.base import OrganizationJobAdmin


@admin.register(Export)
class ExportAdmin(OrganizationJobAdmin):
    """Exports are listed here with their counts and checksums; they are made from the
    project's Exports page or the API, not edited."""

    list_display = ["__str__", "project", "format", "state", "created_by", "finished_at"]
    list_filter = ["status", "format"]
    fields = ["project", "format", "options", "state", "counts", "downloads"]
    readonly_fields = fields

    @admin.display(description="Files")
    def downloads(self, obj):
        if obj.failure:
            return obj.failure
        return format_html_join(
            "",
            '<div><a href="{}">{}</a> {} rows, sha256 <code>{}</code></div>',
            (
                (
                    reverse("exports:download", args=[obj.project_id, obj.pk, f["name"]]),
                    f["name"],
                    f["rows"],
                    f["sha256"],
                )
                for f in obj.files
            ),
        ) or format_html("<em>{}</em>", "none yet")
