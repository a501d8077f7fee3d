from django.urls import re_path

from annotation.api.views import ProjectJudgmentViewSet
from tasks.api.base import Router
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

urlpatterns = [
    re_path(
        r"^projects/(?P<project_id>\d+)/judgments/?$",
        ProjectJudgmentViewSet.as_view({"get": "list"}),
        name="project-judgments",
    ),
    *router.urls,
]
