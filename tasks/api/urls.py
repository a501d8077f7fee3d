from tasks.api.base import Router
from tasks.api.views import ImportJobViewSet, ProjectViewSet

router = Router()
router.register("projects", ProjectViewSet, basename="project")
router.register("imports", ImportJobViewSet, basename="importjob")

urlpatterns = router.urls
