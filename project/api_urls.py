"""The REST API's root (/api/v1/): every app's viewsets in one router. It lives here, above
the apps, so that no app imports another's API (cookiecutter-django's api_router)."""

from django.urls import re_path

from annotation.api.judge import ProjectJudgeViewSet
from annotation.api.views import ProjectJudgmentViewSet
from exports.api.views import ExportViewSet, ProjectExportViewSet
from qc.api.views import (
    LeaderboardLatestViewSet,
    LeaderboardViewSet,
    ProjectQCReportViewSet,
    QCReportViewSet,
)
from tasks.api.audit import AuditEventViewSet
from tasks.api.base import Router
from tasks.api.errors import not_found
from tasks.api.feedback import ProjectSignalPairViewSet
from tasks.api.views import (
    GenerationJobViewSet,
    ImportJobViewSet,
    LLMEndpointViewSet,
    ProjectViewSet,
)

router = Router()
router.register("projects", ProjectViewSet, basename="project")
router.register("imports", ImportJobViewSet, basename="importjob")
router.register("generation-jobs", GenerationJobViewSet, basename="generationjob")
router.register("llm-endpoints", LLMEndpointViewSet, basename="llmendpoint")
router.register("qc-reports", QCReportViewSet, basename="qcreport")
router.register("leaderboards", LeaderboardViewSet, basename="leaderboard")
router.register("exports", ExportViewSet, basename="export")
router.register("audit-events", AuditEventViewSet, basename="auditevent")

urlpatterns = [
    re_path(
        r"^projects/(?P<project_id>\d+)/judgments/?$",
        ProjectJudgmentViewSet.as_view({"get": "list"}),
        name="project-judgments",
    ),
    re_path(
        r"^projects/(?P<project_id>\d+)/qc-report/?$",
        ProjectQCReportViewSet.as_view({"get": "latest", "post": "recompute"}),
        name="project-qc-report",
    ),
    re_path(
        r"^projects/(?P<project_id>\d+)/leaderboard/?$",
        LeaderboardLatestViewSet.as_view({"get": "latest", "post": "compute"}),
        name="project-leaderboard",
    ),
    re_path(
        r"^leaderboard/?$",
        LeaderboardLatestViewSet.as_view({"get": "latest", "post": "compute"}),
        name="organization-leaderboard",
    ),
    re_path(
        r"^projects/(?P<project_id>\d+)/exports/?$",
        ProjectExportViewSet.as_view({"get": "list", "post": "create"}),
        name="project-exports",
    ),
    re_path(
        r"^projects/(?P<project_id>\d+)/signal-pairs/?$",
        ProjectSignalPairViewSet.as_view({"get": "list"}),
        name="project-signal-pairs",
    ),
    re_path(
        r"^projects/(?P<project_id>\d+)/signal-pairs/build/?$",
        ProjectSignalPairViewSet.as_view({"post": "build"}),
        name="project-signal-pairs-build",
    ),
    re_path(
        r"^projects/(?P<project_id>\d+)/judge/?$",
        ProjectJudgeViewSet.as_view({"get": "retrieve", "post": "start"}),
        name="project-judge",
    ),
    *router.urls,
    re_path(r"", not_found),  # last: any other /api/v1/ address is a JSON 404
]
