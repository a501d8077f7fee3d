"""Admin of what the pair builder made from feedback signals: signal pairs and KTO rows,
read-only (they are rebuilt by ``manage.py build_pairs`` or the API, and judged by
experts on the annotate page)."""

from django.contrib import admin

from tasks.admin.base import ReadOnlyAdmin
from tasks.models import KTOExample, SignalPair


@admin.register(SignalPair)
class SignalPairAdmin(ReadOnlyAdmin):
    list_display = ["id", "project", "rule", "status", "confidence", "chosen", "rejected"]
    list_filter = ["rule", "status"]
    list_select_related = ["project", "chosen", "rejected"]
    search_fields = ["reason"]


@admin.register(KTOExample)
class KTOExampleAdmin(ReadOnlyAdmin):
    list_display = ["id", "project", "rule", "desirable", "confidence", "candidate", "signal"]
    list_filter = ["rule", "desirable"]
    list_select_related = ["project", "candidate", "signal"]
