from django.http import FileResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from exports import services
from exports.binarize import RULES, SCORES_FROM
from exports.models import Export
from exports.pairs import CONVERSATIONS, PAIR_SOURCES, POLICIES, RANKING_PAIRS
from exports.preview import preview
from tasks.api.base import OrganizationViewSet
from tasks.api.permissions import ManagesOrganization
from tasks.api.serializers import JOB_FIELDS, JobSerializer
from tasks.audit import Action, record


class ExportSerializer(JobSerializer):
    class Meta:
        model = Export
        fields = [
            "id",
            "project",
            "format",
            "options",
            "counts",
            "files",
            *JOB_FIELDS,
        ]
        read_only_fields = fields


class ExportOptionsSchema(serializers.Serializer):
    """How the API documents an export's options (exports.pairs.Options); they are checked
    by exports.services.options_from, which also refuses unknown keys."""

    policy = serializers.ChoiceField(choices=POLICIES, required=False)
    min_agreement = serializers.FloatField(min_value=0, max_value=1, required=False)
    best_vs_all = serializers.BooleanField(required=False)
    ranking_pairs = serializers.ChoiceField(choices=RANKING_PAIRS, required=False)
    rubric_margin = serializers.FloatField(required=False, allow_null=True)
    dimension = serializers.CharField(
        required=False, allow_blank=True, help_text='"question=value", e.g. "dimension=helpful"'
    )
    sources = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Candidate sources allowed."
    )
    exclude_truncated = serializers.BooleanField(required=False)
    near_identical = serializers.FloatField(
        required=False, allow_null=True, help_text="Drop pairs at least this similar, (0, 1]."
    )
    exclude_contradictory = serializers.BooleanField(required=False)
    ratios = serializers.ListField(
        child=serializers.FloatField(min_value=0),
        min_length=1,
        max_length=3,
        required=False,
        help_text="train, validation[, test]; they add up to 1",
    )
    seed = serializers.IntegerField(required=False)
    conversation = serializers.ChoiceField(
        choices=CONVERSATIONS,
        required=False,
        help_text="How trl, kto and csv treat a prompt with a system prompt or earlier turns.",
    )
    csv_raw = serializers.BooleanField(required=False)
    pair_sources = serializers.ListField(
        child=serializers.ChoiceField(choices=PAIR_SOURCES),
        required=False,
        help_text="Only pairs from these sources: a pair-builder rule, or human (judgments).",
    )
    min_confidence = serializers.FloatField(
        min_value=0,
        max_value=1,
        required=False,
        help_text="Only pairs at least this confident (a rule's confidence, or agreement).",
    )
    binarize = serializers.ChoiceField(
        choices=("", *RULES),
        required=False,
        allow_blank=True,
        help_text="Pairs from a score per candidate by this rule; empty: as judged.",
    )
    scores_from = serializers.ChoiceField(
        choices=SCORES_FROM,
        required=False,
        help_text="order: the judgments' order as a win rate; aspects: the rubric's weighted mean.",
    )
    aspect_weights = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text='"aspect=weight,…" (empty: equal; an aspect left out weighs 0).',
    )
    min_margin = serializers.FloatField(min_value=0, required=False)
    keep_ties = serializers.BooleanField(required=False, help_text="Equal scores make a pair.")
    max_pairs_per_prompt = serializers.IntegerField(
        min_value=0, required=False, help_text="At most k pairs per prompt (0: no limit)."
    )
    score_columns = serializers.BooleanField(
        required=False,
        help_text="margin, score_chosen, score_rejected and per-aspect columns (on with a rule).",
    )


class ExportPreviewSchema(serializers.Serializer):
    """The figures of POST …/exports?preview=1 (exports.preview)."""

    pairs = serializers.IntegerField()
    splits = serializers.DictField(child=serializers.IntegerField())
    prompts = serializers.IntegerField()
    prompts_kept = serializers.IntegerField()
    prompts_kept_share = serializers.FloatField(allow_null=True)
    length_difference = serializers.DictField(child=serializers.FloatField(allow_null=True))
    chosen_shown_first = serializers.FloatField(allow_null=True)
    pairs_with_display = serializers.IntegerField()


@extend_schema_field(ExportOptionsSchema)
class ExportOptionsField(serializers.DictField):
    pass


class ExportRequestSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=services.ALL_FORMATS)
    options = ExportOptionsField(required=False, default=dict)

    def validate_options(self, value):
        try:
            return services.options_from(value)
        except ValueError as wrong:
            raise serializers.ValidationError(str(wrong)) from wrong


class ProjectExportViewSet(OrganizationViewSet):
    """A project's exports (GET), or a new one run by a job (POST: 202, then poll
    /api/v1/exports/{id}). Leads, admins and organization tokens."""

    queryset = Export.objects.none()
    serializer_class = ExportSerializer
    permission_classes = [ManagesOrganization]
    ordering_fields = ["created_at"]

    def get_organization_queryset(self):
        return Export.objects.filter(project=self.project())

    @extend_schema(responses={200: ExportSerializer(many=True)})
    def list(self, request, project_id=None):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(ExportSerializer(page, many=True).data)

    @extend_schema(
        request=ExportRequestSerializer,
        parameters=[
            OpenApiParameter(
                "preview",
                bool,
                description="1: return what the export would hold (200), write nothing",
            )
        ],
        responses={202: ExportSerializer, 200: ExportPreviewSchema},
    )
    def create(self, request, project_id=None):
        project = self.project()
        asked = ExportRequestSerializer(data=request.data)
        asked.is_valid(raise_exception=True)
        if request.query_params.get("preview") in ("1", "true"):
            try:
                figures = preview(project, asked.validated_data["options"])
            except ValueError as refused:  # e.g. an aspect the project's rubric lacks
                raise serializers.ValidationError({"options": [str(refused)]}) from refused
            return Response(figures)
        person = request.user if getattr(request.user, "pk", None) else None
        try:
            export = services.request_export(
                project, asked.validated_data["format"], asked.validated_data["options"], person
            )
        except ValueError as refused:  # e.g. conversations a flat format was told to refuse
            raise serializers.ValidationError({"options": [str(refused)]}) from refused
        return Response(
            ExportSerializer(export).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/api/v1/exports/{export.pk}"},
        )


class ExportViewSet(mixins.RetrieveModelMixin, OrganizationViewSet):
    """One export: its status while the job runs, then its counts and files; each file is
    downloaded (streamed) from /api/v1/exports/{id}/files/{name}."""

    queryset = Export.objects.none()
    serializer_class = ExportSerializer
    permission_classes = [ManagesOrganization]

    def get_organization_queryset(self):
        return Export.objects.all()

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    @action(detail=True, methods=["get"], url_path=r"files/(?P<name>[^/]+)")
    def files(self, request, pk=None, name=None):
        return file_response(self.get_object(), name)


def file_response(export: Export, name: str) -> FileResponse:
    """One file of an export, streamed as a download (never rendered by the browser)."""
    try:
        path = services.export_file(export, name)
    except FileNotFoundError as missing:
        raise NotFound("No such file in this export.") from missing
    response = FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=path.name,
        content_type="application/octet-stream",
    )
    response["X-Content-Type-Options"] = "nosniff"
    record(
        Action.EXPORT_DOWNLOADED,
        organization=export.organization_id,
        obj=export,
        object_type="export",
        data={"project": export.project_id, "file": path.name},
    )
    return response
