"""``GET /api/v1/audit-events``: the organization's audit trail, read-only, for leads and
organization tokens (e.g. a SIEM collecting it). Same filters as the /audit/ page."""

from rest_framework import mixins, serializers

from tasks.api.base import OrganizationViewSet
from tasks.api.permissions import ManagesOrganization
from tasks.audit import COLUMNS, Action, AuditEventFilter, record
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

    def list(self, request, *args, **kwargs):
        # Reading the trail is on the trail, as its downloads from /audit/ are: one event
        # per request (a page of events), with the filters asked for and how many came
        # back. A refused or invalid query reads nothing and records nothing. (A comment,
        # not a docstring: the class's docstring describes the operation in the schema.)
        response = super().list(request, *args, **kwargs)
        page = response.data
        rows = page["results"] if isinstance(page, dict) else page
        record(
            Action.AUDIT_READ,
            organization=request.organization,
            object_type="audit",
            data={
                "filters": {k: v for k, v in request.query_params.items() if v},
                "count": len(rows),
            },
        )
        return response
