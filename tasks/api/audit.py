"""``GET /api/v1/audit-events``: the organization's audit trail, read-only, for leads and
organization tokens (e.g. a SIEM collecting it). Same filters as the /audit/ page."""

from rest_framework import mixins, serializers

from tasks.api.base import OrganizationViewSet
from tasks.api.permissions import ManagesOrganization
from tasks.audit import COLUMNS, AuditEventFilter
from tasks.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source=COLUMNS["actor"])
    object = serializers.CharField(source=COLUMNS["object"])

    class Meta:
        model = AuditEvent
        fields = list(COLUMNS)
        read_only_fields = fields


class AuditEventViewSet(mixins.ListModelMixin, OrganizationViewSet):
    """Newest first. Filter by ``actor`` (part of an e-mail or token prefix), ``action``,
    ``object_type``, ``object_id``, ``since`` and ``until`` (dates, inclusive)."""

    queryset = AuditEvent.objects.none()
    serializer_class = AuditEventSerializer
    permission_classes = [ManagesOrganization]
    filterset_class = AuditEventFilter

    def get_organization_queryset(self):
        return AuditEvent.objects.all()
