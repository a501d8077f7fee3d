"""``GET /api/v1/audit-events``: the organization's audit trail, read-only, for leads and
organization tokens (e.g. a SIEM collecting it). Same filters as the /audit/ page."""

from rest_framework import mixins, serializers

from tasks.api.base import OrganizationViewSet
from tasks.api.permissions import ManagesOrganization
from tasks.audit import event_filter
from tasks.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_label")
    object = serializers.CharField(source="object_repr")

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "at",
            "actor",
            "actor_id",
            "action",
            "object_type",
            "object_id",
            "object",
            "ip",
            "user_agent",
            "changes",
            "data",
        ]
        read_only_fields = fields


class AuditEventViewSet(mixins.ListModelMixin, OrganizationViewSet):
    """Newest first. Filter by ``actor`` (part of an e-mail or token prefix), ``action``,
    ``object_type``, ``object_id``, ``since`` and ``until`` (dates, inclusive)."""

    queryset = AuditEvent.objects.none()
    serializer_class = AuditEventSerializer
    permission_classes = [ManagesOrganization]
    filterset_class = event_filter()

    def get_organization_queryset(self):
        return AuditEvent.objects.all()
