import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from tasks.api.base import OrganizationViewSet
from tasks.api.permissions import ManagesOrganization
from tasks.api.serializers import (
    ImportJobSerializer,
    ImportUploadSerializer,
    PotatoUploadSerializer,
    ProjectSerializer,
)
from tasks.imports import create_import_job, run_now_or_enqueue
from tasks.models import ImportJob, Membership, Project


class ProjectFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Project.Status.choices)
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Project
        fields = ["status", "name"]


def _job_response(job: ImportJob, ran: bool, request) -> Response:
    data = ImportJobSerializer(job, context={"request": request}).data
    if not ran:
        return Response(
            data, status=status.HTTP_202_ACCEPTED, headers={"Location": f"/api/v1/imports/{job.pk}"}
        )
    if job.status == ImportJob.Status.FAILED:
        errors = [
            {**e, "field": e.get("key"), "message": _describe(e), "code": "invalid"}
            for e in job.errors
        ]
        return Response({"errors": errors, "import": data}, status=status.HTTP_400_BAD_REQUEST)
    return Response(data, status=status.HTTP_201_CREATED)


def _describe(error: dict) -> str:
    parts = [p for p in (error.get("file"), error.get("where")) if p]
    if error.get("id"):
        parts.append(f"id {error['id']!r}")
    if error.get("key"):
        parts.append(f"key '{error['key']}'")
    return f"{', '.join(parts)}: {error['message']}" if parts else error["message"]


class ProjectViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet):
    """Projects of the caller's organization (annotators: the ones open for work)."""

    queryset = Project.objects.none()
    serializer_class = ProjectSerializer
    filterset_class = ProjectFilter
    ordering_fields = ["name", "created_at", "updated_at"]

    def get_organization_queryset(self):
        membership: Membership | None = self.caller_membership
        if self.request.auth is not None:  # a token reads as its organization's lead would
            return Project.objects.all()
        return Project.objects.for_member(membership)

    @extend_schema(
        request={"multipart/form-data": ImportUploadSerializer},
        responses={201: ImportJobSerializer, 202: ImportJobSerializer},
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="imports",
        permission_classes=[ManagesOrganization],
        parser_classes=[MultiPartParser, FormParser],
        filter_backends=[],
    )
    def imports(self, request, pk=None):
        """Import prompts from JSON, JSONL or CSV files. Small uploads are imported at once
        (201, or 400 listing every problem with nothing written); large ones become a job
        (202; follow its progress at /api/v1/imports/{id})."""
        project = self.get_object()
        upload = ImportUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        job = create_import_job(
            organization=request.organization,
            kind=ImportJob.Kind.PROMPTS,
            project=project,
            uploads=upload.validated_data["file"],
            skip_invalid=upload.validated_data["skip_invalid"],
            allow_duplicates=upload.validated_data["allow_duplicates"],
            created_by=_person(request),
        )
        return _job_response(job, run_now_or_enqueue(job), request)

    @extend_schema(
        request={"multipart/form-data": PotatoUploadSerializer},
        responses={201: ImportJobSerializer, 202: ImportJobSerializer},
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="import-potato",
        permission_classes=[ManagesOrganization],
        parser_classes=[MultiPartParser, FormParser],
        filter_backends=[],
    )
    def import_potato(self, request):
        """Create or update a project from a Potato config.yaml and the data files it names."""
        upload = PotatoUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        job = create_import_job(
            organization=request.organization,
            kind=ImportJob.Kind.POTATO,
            uploads=[upload.validated_data["config"], *upload.validated_data["data"]],
            skip_invalid=upload.validated_data["skip_invalid"],
            created_by=_person(request),
        )
        return _job_response(job, run_now_or_enqueue(job), request)


def _person(request):
    return request.user if getattr(request.user, "pk", None) else None


class ImportJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet):
    """Import jobs of the organization, with their progress and outcome."""

    queryset = ImportJob.objects.none()
    serializer_class = ImportJobSerializer
    permission_classes = [ManagesOrganization]
    ordering_fields = ["created_at"]

    def get_organization_queryset(self):
        return ImportJob.objects.select_related("project")
