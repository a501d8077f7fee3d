"""The API of the pairs built from feedback signals: build them (leads, admins, tokens) and
read them. Annotators get neither: the experts who verify a pair must not learn its source
before they answer.

A build is a job (``tasks.imports.start_pair_build``): a million signals take longer than a
proxy waits, so a large project's build answers 202 with the job to poll at
``/api/v1/imports/<id>`` (its ``report["pairs"]`` holds the counts once it succeeded); a
small one is built during the request and answers 200 with the counts, as before."""

import django_filters
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status
from rest_framework.response import Response

from tasks.api.base import OrganizationViewSet
from tasks.api.permissions import ManagesOrganization
from tasks.api.serializers import ImportJobSerializer
from tasks.imports import start_pair_build
from tasks.models import ImportJob, Rule, SignalPair


class SignalPairSerializer(serializers.ModelSerializer):
    prompt = serializers.CharField(source="prompt.external_id", read_only=True)
    prompt_text = serializers.CharField(source="prompt.text", read_only=True)
    chosen_text = serializers.CharField(source="chosen.text", read_only=True)
    rejected_text = serializers.CharField(source="rejected.text", read_only=True)

    class Meta:
        model = SignalPair
        fields = [
            "id",
            "prompt",
            "prompt_text",
            "chosen",
            "chosen_text",
            "rejected",
            "rejected_text",
            "rule",
            "confidence",
            "reason",
            "evidence",
            "status",
            "item",
            "created_at",
        ]
        read_only_fields = fields


class SignalPairFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=SignalPair.Status.choices)
    rule = django_filters.ChoiceFilter(choices=Rule.choices)
    min_confidence = django_filters.NumberFilter(field_name="confidence", lookup_expr="gte")

    class Meta:
        model = SignalPair
        fields = ["status", "rule", "min_confidence"]


class ProjectSignalPairViewSet(mixins.ListModelMixin, OrganizationViewSet):
    """The pairs built from a project's feedback signals (GET, filtered by ``status``,
    ``rule`` and ``min_confidence``), and a build of them (POST …/build: the counts by rule
    and status, see ``tasks.feedback.pairs.build_pairs``). Leads, admins and tokens only."""

    queryset = SignalPair.objects.none()
    serializer_class = SignalPairSerializer
    filterset_class = SignalPairFilter
    permission_classes = [ManagesOrganization]
    ordering_fields = ["confidence", "created_at"]

    def get_organization_queryset(self):
        return (
            SignalPair.objects.filter(project=self.project())
            .select_related("prompt", "chosen", "rejected")
            .order_by("id")
        )

    @extend_schema(
        request=None,
        responses={
            200: inline_serializer(
                "PairBuildCounts",
                {"pairs": serializers.DictField(), "job": serializers.IntegerField()},
            ),
            202: ImportJobSerializer,
        },
    )
    def build(self, request, project_id=None):
        person = request.user if getattr(request.user, "pk", None) else None  # not a token
        job, ran = start_pair_build(project=self.project(), created_by=person)
        if not ran:
            data = ImportJobSerializer(job, context={"request": request}).data
            location = {"Location": f"/api/v1/imports/{job.pk}"}
            return Response(data, status=status.HTTP_202_ACCEPTED, headers=location)
        if job.status == ImportJob.Status.FAILED:
            errors = [{"message": job.failure, "code": "build_failed"}]
            return Response(
                {"errors": errors, "job": job.pk}, status=status.HTTP_500_INTERNAL_SERVER_ERROR
            )
        return Response({**job.report["pairs"], "job": job.pk})
