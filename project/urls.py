from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from project import health

urlpatterns = [
    # Liveness, readiness and the full report (project/health.py) share one public name,
    # the one tests/tasks/test_tenant_isolation.py declares; the last pattern of a name is
    # what reverse("healthz") gives: /healthz.
    path("healthz/live", health.live, name="healthz"),
    path("healthz/ready", health.ready, name="healthz"),
    path("healthz", health.report, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", include("project.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("annotation.urls")),
    path("", include("qc.urls")),
    path("", include("exports.urls")),
    path("", include("chat.urls")),
    path("", include("tasks.urls")),
]
