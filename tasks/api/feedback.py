"""The API of the pairs built from feedback signals: build them (leads, admins, tokens) and
read them. Annotators get neither: the experts who verify a pair must not learn its source
before they answer."""

import django_filters
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers
from rest_framework.response import Response

from tasks.api.base import OrganizationViewSet
from tasks.api.permissions import ManagesOrganization
from tasks.feedback.verify import build_and_queue
from tasks.models import Project, Rule, SignalPair
from tasks.tenancy import get_for_organization_or_404


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

    def project(self) -> Project:
        return get_for_organization_or_404(
            Project.objects.all(), self.request, pk=self.kwargs["project_id"]
        )

    def get_organization_queryset(self):
        return (
            SignalPair.objects.filter(project=self.project())
            .select_related("prompt", "chosen", "rejected")
            .order_by("id")
        )

    @extend_schema(
        request=None,
        responses={200: inline_serializer("PairBuildCounts", {"pairs": serializers.DictField()})},
    )
    def build(self, request, project_id=None):
        return Response(build_and_queue(project=self.project()))
