from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from qc import services
from qc.models import Leaderboard, QCReport
from tasks.api.base import OrganizationViewSet
from tasks.api.permissions import ManagesOrganization
from tasks.api.serializers import JOB_FIELDS, JobSerializer


class QCReportSerializer(JobSerializer):
    class Meta:
        model = QCReport
        fields = [
            "id",
            "project",
            "data",
            *JOB_FIELDS,
        ]
        read_only_fields = fields


class LatestQCReportSerializer(QCReportSerializer):
    last_succeeded = serializers.SerializerMethodField(
        help_text="When the newest report failed: the address of the last one that "
        "succeeded (null if none did)."
    )

    class Meta(QCReportSerializer.Meta):
        fields = [*QCReportSerializer.Meta.fields, "last_succeeded"]
        read_only_fields = fields

    def get_last_succeeded(self, report) -> str | None:
        shown = self.context.get("shown")
        if report.status != QCReport.Status.FAILED or shown is None:
            return None
        return f"/api/v1/qc-reports/{shown.pk}"


class ProjectQCReportViewSet(OrganizationViewSet):
    """A project's newest finished QC report (GET: its numbers, or, if it failed, its
    "Failed: <reason>" and where the last successful one is), or a fresh one computed by a
    job (POST: 202 with the report to follow at /api/v1/qc-reports/{id}). Leads, admins and
    tokens only: the report compares annotators."""

    queryset = QCReport.objects.none()
    serializer_class = QCReportSerializer
    permission_classes = [ManagesOrganization]
    filter_backends = []
    pagination_class = None

    @extend_schema(responses={200: LatestQCReportSerializer})
    def latest(self, request, project_id=None):
        reports = services.reports_of(self.project())
        report = reports.failed or reports.shown
        if report is None and reports.pending is not None:
            raise NotFound(
                "No QC report yet: one is being computed at "
                f"/api/v1/qc-reports/{reports.pending.pk}."
            )
        if report is None:
            raise NotFound("No QC report yet: POST to this address to compute one.")
        _record_figures(report)
        return Response(LatestQCReportSerializer(report, context={"shown": reports.shown}).data)

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

    def retrieve(self, request, *args, **kwargs):
        report = self.get_object()
        _record_figures(report)
        return Response(self.get_serializer(report).data)


def _record_figures(report: QCReport) -> None:
    """A report whose figures the answer carries is a download (the dashboard's CSV and
    JSON are recorded the same way); polling a queued or failed one hands out nothing."""
    if report.status == QCReport.Status.SUCCEEDED:
        services.record_download(report, "api")


class LeaderboardSerializer(JobSerializer):
    class Meta:
        model = Leaderboard
        fields = ["id", "project", "source_kind", "length_control", "data", *JOB_FIELDS]
        read_only_fields = fields


class LeaderboardRequestSerializer(serializers.Serializer):
    source_kind = serializers.ChoiceField(
        choices=Leaderboard.SourceKind.choices, default=Leaderboard.SourceKind.MODEL
    )
    length_control = serializers.BooleanField(default=False)


class LeaderboardLatestViewSet(OrganizationViewSet):
    """The newest leaderboard of a project (``/projects/{id}/leaderboard``) or of the whole
    organization (``/leaderboard``). GET: the newest finished one (its table, or its
    failure); POST ``{"source_kind": "model"|"variant"|"recipe", "length_control": bool}``:
    202 with a job to follow at /api/v1/leaderboards/{id}. Leads, admins and tokens only."""

    queryset = Leaderboard.objects.none()
    serializer_class = LeaderboardSerializer
    permission_classes = [ManagesOrganization]
    filter_backends = []
    pagination_class = None

    @extend_schema(responses={200: LeaderboardSerializer})
    def latest(self, request, project_id=None):
        boards = services.leaderboards_of(request.organization, self.project())
        board = boards.failed or boards.shown
        if board is None and boards.pending is not None:
            raise NotFound(
                "No leaderboard yet: one is being computed at "
                f"/api/v1/leaderboards/{boards.pending.pk}."
            )
        if board is None:
            raise NotFound("No leaderboard yet: POST to this address to compute one.")
        _record_table(board)
        return Response(LeaderboardSerializer(board).data)

    @extend_schema(request=LeaderboardRequestSerializer, responses={202: LeaderboardSerializer})
    def compute(self, request, project_id=None):
        project = self.project()
        asked = LeaderboardRequestSerializer(data=request.data)
        asked.is_valid(raise_exception=True)
        person = request.user if getattr(request.user, "pk", None) else None
        board = services.request_leaderboard(
            organization=request.organization,
            project=project,
            created_by=person,
            **asked.validated_data,
        )
        return Response(
            LeaderboardSerializer(board).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/api/v1/leaderboards/{board.pk}"},
        )


class LeaderboardViewSet(mixins.RetrieveModelMixin, OrganizationViewSet):
    """One leaderboard: its status while the job runs, then its table."""

    queryset = Leaderboard.objects.none()
    serializer_class = LeaderboardSerializer
    permission_classes = [ManagesOrganization]

    def get_organization_queryset(self):
        return Leaderboard.objects.all()

    def retrieve(self, request, *args, **kwargs):
        board = self.get_object()
        _record_table(board)
        return Response(self.get_serializer(board).data)


def _record_table(board: Leaderboard) -> None:
    if board.status == Leaderboard.Status.SUCCEEDED:
        services.record_leaderboard_download(board, "api")
