from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from exports.models import Export
from tasks.admin import OrganizationScopedAdmin


@admin.register(Export)
class ExportAdmin(OrganizationScopedAdmin):
    """Exports are listed here with their counts and checksums; they are made from the
    project's Exports page or the API, not edited."""

    list_display = ["__str__", "project", "format", "status", "created_by", "finished_at"]
    list_filter = ["status", "format"]
    fields = ["project", "format", "options", "status", "counts", "downloads", "error"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Files")
    def downloads(self, obj):
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
