import django_filters
from rest_framework import mixins, serializers

from annotation.models import Judgment
from annotation.strength import judgment_signed_strength
from tasks.api.base import OrganizationViewSet
from tasks.models import Project
from tasks.schema import strength_levels
from tasks.tenancy import get_for_organization_or_404


class JudgmentSerializer(serializers.ModelSerializer):
    annotator = serializers.EmailField(source="annotator.email", read_only=True)
    prompt = serializers.CharField(source="item.prompt.external_id", read_only=True)
    # Graded preference: the strength signed towards the item's first candidate
    # (``annotation.strength``); null where the project asks for no strength.
    signed_strength = serializers.SerializerMethodField()

    def get_signed_strength(self, judgment: Judgment) -> int | None:
        if not self.context.get("graded"):
            return None
        return judgment_signed_strength(judgment, judgment.item)

    class Meta:
        model = Judgment
        fields = [
            "id",
            "item",
            "prompt",
            "annotator",
            "outcome",
            "chosen",
            "rejected",
            "label",
            "strength",
            "signed_strength",
            "ranking",
            "answers",
            "rubric_scores",
            "schema_version",
            "reasoning",
            "corrected",
            "time_spent_ms",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class JudgmentFilter(django_filters.FilterSet):
    annotator = django_filters.CharFilter(field_name="annotator__email", lookup_expr="iexact")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Judgment
        fields = ["annotator", "created_after", "created_before"]


class ProjectJudgmentViewSet(mixins.ListModelMixin, OrganizationViewSet):
    """Judgments of one project: all of them for leads, admins and tokens; an annotator's
    own otherwise. Filter by ``annotator`` (e-mail) and ``created_after`` /
    ``created_before`` (ISO date-times)."""

    queryset = Judgment.objects.none()
    serializer_class = JudgmentSerializer
    filterset_class = JudgmentFilter
    ordering_fields = ["created_at", "updated_at"]

    def get_serializer_context(self):
        context = super().get_serializer_context()
        project = getattr(self, "project", None)
        context["graded"] = bool(
            project is not None
            and project.mode == Project.Mode.PAIRWISE
            and strength_levels(project.preference_question)
        )
        return context

    def get_organization_queryset(self):
        request = self.request
        project = get_for_organization_or_404(
            Project.objects.for_member(request.membership)
            if request.auth is None
            else Project.objects.all(),
            request,
            pk=self.kwargs["project_id"],
        )
        self.project = project
        judgments = (
            Judgment.objects.filter(project=project)
            .select_related("annotator", "item__prompt")
            .order_by("-created_at")
        )
        if request.auth is None and not request.membership.manages:
            judgments = judgments.filter(annotator=request.user)
        return judgments
