from tasks.api.base import Router
from tasks.api.views import ProjectViewSet

router = Router()
router.register("projects", ProjectViewSet, basename="project")

urlpatterns = router.urls
