"""The API of the tasks app's nouns (/api/v1/): projects (with prompt imports and candidate
generation as actions), import jobs, generation jobs and the LLM endpoints an organization
may use. Every viewset derives its queryset from the caller's organization
(tasks.api.base.OrganizationViewSet); the routes are in project/api_urls.py."""

import django_filters
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent, ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from tasks import generation
from tasks.api.base import OrganizationViewSet
from tasks.api.permissions import ManagesOrganization
from tasks.api.serializers import (
    FeedbackUploadSerializer,
    GenerationJobSerializer,
    GenerationRequestSerializer,
    ImportJobSerializer,
    ImportUploadSerializer,
    LLMEndpointSerializer,
    PotatoUploadSerializer,
    ProjectSerializer,
)
from tasks.importers.limits import ImportTooLarge
from tasks.imports import create_import_job, limit_upload, run_now_or_enqueue
from tasks.models import GenerationJob, ImportJob, LLMEndpoint, Membership, Project


class ProjectFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Project.Status.choices)
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Project
        fields = ["status", "name"]


class UploadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


IMPORT_ACTIONS = ("imports", "import_potato", "feedback_imports")


def _upload_refusal(exc: Exception) -> Exception:
    """Django's and the import's refusals of a request body, as API errors (Django would
    answer them with an HTML page)."""
    if isinstance(exc, ImportTooLarge):
        return UploadTooLarge(str(exc))
    if isinstance(exc, RequestDataTooBig):
        return UploadTooLarge("The form fields of this request are too large.")
    if isinstance(exc, TooManyFilesSent):
        return exceptions.ValidationError(
            {"file": [f"Send at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files at once."]},
            code="too_many_files",
        )
    return exc


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

    def initialize_request(self, request, *args, **kwargs):
        drf_request = super().initialize_request(request, *args, **kwargs)
        if self.action in IMPORT_ACTIONS:  # count the upload before anything reads the body
            limit_upload(request)
        return drf_request

    def handle_exception(self, exc):
        return super().handle_exception(_upload_refusal(exc))

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
        (202; follow its progress at /api/v1/imports/{id}). Files over
        CHOSEN_IMPORT_MAX_BYTES together are a 413, more rows than CHOSEN_IMPORT_MAX_ROWS a
        400 (or a failed job)."""
        return self._import(request, ImportUploadSerializer, ImportJob.Kind.PROMPTS)

    @extend_schema(
        request={"multipart/form-data": FeedbackUploadSerializer},
        responses={201: ImportJobSerializer, 202: ImportJobSerializer},
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="feedback-imports",
        permission_classes=[ManagesOrganization],
        parser_classes=[MultiPartParser, FormParser],
        filter_backends=[],
    )
    def feedback_imports(self, request, pk=None):
        """Import feedback logs (ours or Open WebUI's export), A/B test results, graded
        reviews or expert corrections as preference signal (``kind``; ``scale`` for grades;
        ``redact`` and ``redact_pattern`` to replace personal data before it is stored).
        Answers as prompt imports do: 201, 400 listing every problem, or 202 with a job."""
        return self._import(request, FeedbackUploadSerializer, ImportJob.Kind.FEEDBACK)

    def _import(self, request, serializer_class, kind):
        """A prompt or feedback upload into this project: validated, then imported at once or
        as a job. The two serializers differ only in their own option (``allow_duplicates`` /
        ``options``)."""
        project = self.get_object()
        upload = serializer_class(data=request.data)
        upload.is_valid(raise_exception=True)
        data = upload.validated_data
        job = create_import_job(
            organization=request.organization,
            kind=kind,
            project=project,
            uploads=data["file"],
            skip_invalid=data["skip_invalid"],
            created_by=_person(request),
            **{key: data[key] for key in ("allow_duplicates", "options") if key in data},
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

    @extend_schema(request=GenerationRequestSerializer, responses={202: GenerationJobSerializer})
    @action(
        detail=True,
        methods=["post"],
        url_path="generation-jobs",
        permission_classes=[ManagesOrganization],
        filter_backends=[],
    )
    def generation_jobs(self, request, pk=None):
        """Draft candidates for the project's prompts (or the given ones) with an LLM
        endpoint and a recipe: 202, follow it at /api/v1/generation-jobs/{id}."""
        project = self.get_object()
        body = GenerationRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            job = generation.request_generation(
                project=project,
                endpoint_id=data["endpoint"],
                recipe=data.get("recipe"),
                variants=data.get("variants"),
                prompt_ids=data.get("prompts"),
                created_by=_person(request),
            )
        except ValidationError as error:
            raise exceptions.ValidationError(error.message_dict) from None
        return Response(
            GenerationJobSerializer(job, context={"request": request}).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/api/v1/generation-jobs/{job.pk}"},
        )


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


class GenerationJobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, OrganizationViewSet):
    """Candidate generation jobs of the organization, with progress and failures."""

    queryset = GenerationJob.objects.none()
    serializer_class = GenerationJobSerializer
    permission_classes = [ManagesOrganization]
    ordering_fields = ["created_at"]

    def get_organization_queryset(self):
        return GenerationJob.objects.select_related("endpoint")

    @extend_schema(request=None, responses={200: GenerationJobSerializer})
    @action(detail=True, methods=["post"], filter_backends=[])
    def cancel(self, request, pk=None):
        """Stop the job: requests in flight finish, no new ones start."""
        job = generation.cancel(self.get_object())
        return Response(GenerationJobSerializer(job, context={"request": request}).data)

    @extend_schema(request=None, responses={202: GenerationJobSerializer})
    @action(detail=True, methods=["post"], filter_backends=[])
    def resume(self, request, pk=None):
        """Dispatch an unfinished job again (after a worker died): only missing candidates
        are requested. 409 for a finished job."""
        job = self.get_object()
        if not generation.resume(job):
            return Response(
                {
                    "errors": [
                        {"field": None, "message": "The job is finished.", "code": "finished"}
                    ]
                },
                status=status.HTTP_409_CONFLICT,
            )
        return Response(
            GenerationJobSerializer(job, context={"request": request}).data,
            status=status.HTTP_202_ACCEPTED,
        )


class LLMEndpointViewSet(mixins.ListModelMixin, OrganizationViewSet):
    """LLM endpoints the organization may generate with."""

    queryset = LLMEndpoint.objects.none()
    serializer_class = LLMEndpointSerializer
    permission_classes = [ManagesOrganization]
    ordering_fields = ["name"]

    def get_queryset(self):
        return LLMEndpoint.for_organization(self.request.organization)
