from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from qc import services
from qc.models import QCReport
from tasks.api.base import OrganizationViewSet
from tasks.api.permissions import ManagesOrganization
from tasks.models import Project
from tasks.tenancy import get_for_organization_or_404


class QCReportSerializer(serializers.ModelSerializer):
    class Meta:
        model = QCReport
        fields = ["id", "project", "status", "error", "data", "created_at", "finished_at"]
        read_only_fields = fields


class ProjectQCReportViewSet(OrganizationViewSet):
    """A project's latest QC report (GET), or a fresh one computed by a job (POST: 202 with
    the report to follow at /api/v1/qc-reports/{id}). Leads, admins and tokens only: the
    report compares annotators."""

    queryset = QCReport.objects.none()
    serializer_class = QCReportSerializer
    permission_classes = [ManagesOrganization]
    filter_backends = []
    pagination_class = None

    def project(self) -> Project:
        return get_for_organization_or_404(
            Project.objects.all(), self.request, pk=self.kwargs["project_id"]
        )

    @extend_schema(responses={200: QCReportSerializer})
    def latest(self, request, project_id=None):
        report = services.latest(self.project())
        if report is None:
            raise NotFound("No QC report yet: POST to this address to compute one.")
        return Response(QCReportSerializer(report).data)

    @extend_schema(request=None, responses={202: QCReportSerializer})
    def recompute(self, request, project_id=None):
        person = request.user if getattr(request.user, "pk", None) else None
        report = services.request_report(self.project(), created_by=person)
        return Response(
            QCReportSerializer(report).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/api/v1/qc-reports/{report.pk}"},
        )


class QCReportViewSet(mixins.RetrieveModelMixin, OrganizationViewSet):
    """One QC report: its status while the job runs, then its numbers."""

    queryset = QCReport.objects.none()
    serializer_class = QCReportSerializer
    permission_classes = [ManagesOrganization]

    def get_organization_queryset(self):
        return QCReport.objects.all()
