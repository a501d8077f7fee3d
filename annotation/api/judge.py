"""The AI judge in the API: a project's judge settings and runs (GET), a new run (POST).
Leads, admins and tokens only: annotators never see the judge's verdicts."""

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from annotation import judge
from annotation.models import JudgeConfig, JudgeRun
from tasks.api.base import OrganizationViewSet
from tasks.api.permissions import ManagesOrganization
from tasks.api.serializers import JOB_FIELDS, JobSerializer


class JudgeConfigSerializer(serializers.ModelSerializer):
    class Meta:
        model = JudgeConfig
        fields = [*judge.SETTINGS, "updated_at"]
        read_only_fields = fields


class JudgeRunSerializer(JobSerializer):
    progress = serializers.SerializerMethodField()

    class Meta:
        model = JudgeRun
        fields = [
            "id",
            "project",
            "endpoint",
            "model",
            "settings",
            "items",
            "total",
            "done",
            "unparsed",
            "progress",
            "figures",
            *JOB_FIELDS,
        ]
        read_only_fields = fields

    def get_progress(self, run) -> dict:
        return judge.progress_of(run)


class ProjectJudgeSerializer(serializers.Serializer):
    """What GET answers (documentation only: the view builds it)."""

    config = JudgeConfigSerializer(allow_null=True)
    runs = JudgeRunSerializer(many=True)
    status = serializers.CharField(allow_null=True)
    progress = serializers.DictField(allow_null=True)


class ProjectJudgeViewSet(OrganizationViewSet):
    """A project's AI judge. GET: its settings, its ten newest runs, and the newest run's
    ``status`` and ``progress`` (what a page follows while it runs). POST: a new run over
    every pair with the settings as they are (202; 400 with the reason when there is no
    judge, its endpoint is withdrawn, or there are no pairs)."""

    queryset = JudgeRun.objects.none()
    serializer_class = JudgeRunSerializer
    permission_classes = [ManagesOrganization]
    filter_backends = []
    pagination_class = None

    @extend_schema(responses={200: ProjectJudgeSerializer})
    def retrieve(self, request, project_id=None):
        project = self.project()
        config = judge.config_of(project)
        runs = list(JudgeRun.objects.filter(project=project)[:10])
        newest = runs[0] if runs else None
        return Response(
            {
                "config": JudgeConfigSerializer(config).data if config else None,
                "runs": JudgeRunSerializer(runs, many=True).data,
                "status": newest.status if newest else None,
                "progress": judge.progress_of(newest) if newest else None,
            }
        )

    @extend_schema(request=None, responses={202: JudgeRunSerializer})
    def start(self, request, project_id=None):
        person = request.user if getattr(request.user, "pk", None) else None
        try:
            run = judge.start_run(project=self.project(), created_by=person)
        except ValidationError as error:
            raise exceptions.ValidationError(error.message_dict) from None
        return Response(JudgeRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)
